"""A report as a document of blocks, rendered to markdown and to self-contained HTML; a display
table rendered to markdown, HTML and LaTeX (booktabs). Bold cells are marked ``**...**`` and code
(a command) ```...```, as in markdown: HTML shows ``<strong>``/``<code>``, LaTeX ``\textbf``/``\texttt``."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

BOLD = re.compile(r"\*\*(.+?)\*\*")
CODE = re.compile(r"`([^`]+)`")


@dataclass
class Figure:
    name: str  # file name under figures/
    caption: str
    png: bytes


@dataclass
class Doc:
    """A report's content: a title and blocks, each (kind, value), kind one of ``h2`` (a
    heading), ``p`` (a paragraph), ``table`` (a display table), ``figure`` (a Figure), ``kv`` (a
    dict shown as a list) and ``code`` (verbatim text)."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, value: Any) -> None:
        self.blocks.append((kind, value))


# --------------------------------------------------------------------------------------------
# a display table
# --------------------------------------------------------------------------------------------
def table_markdown(table: pd.DataFrame) -> str:
    safe = table.map(lambda s: str(s).replace("|", "\\|"))
    return str(safe.to_markdown(index=False, disable_numparse=True))


def inline_html(escaped: str) -> str:
    """HTML-escaped text with its markdown bold and code spans as HTML."""
    return CODE.sub(r"<code>\1</code>", BOLD.sub(r"<strong>\1</strong>", escaped))


def table_html(table: pd.DataFrame) -> str:
    body = table.to_html(index=False, escape=True, border=0, classes="results")
    return '<div class="scroll">' + inline_html(body) + "</div>"


_TEX_ESCAPES = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "—": "---",
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "÷": r"$\div$",
    "σ": r"$\sigma$",
    **{m: f"\\textsuperscript{{{i}}}" for i, m in enumerate("¹²³⁴⁵⁶⁷⁸⁹", start=1)},
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def tex_inline(text: str) -> str:
    """Text for LaTeX: escaped, its bold as \\textbf and its code spans as \\texttt."""

    def code(part: str) -> str:
        pieces = CODE.split(part)  # odd indices were inside backticks
        return "".join(r"\texttt{" + tex_escape(p) + "}" if i % 2 else tex_escape(p) for i, p in enumerate(pieces))

    parts = BOLD.split(str(text))  # odd indices were inside ** **
    return "".join(r"\textbf{" + code(p) + "}" if i % 2 else code(p) for i, p in enumerate(parts))


def table_latex(table: pd.DataFrame, caption: str, label: str, notes: list[str] | tuple[str, ...] = ()) -> str:
    """A booktabs table; bold cells become \\textbf, code \\texttt; ``notes`` below the rules."""
    spec = "l" * 2 + "r" * (len(table.columns) - 2)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{tex_inline(caption)}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_inline(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + tex_inline(note) for note in notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# a document
# --------------------------------------------------------------------------------------------
def render_markdown(doc: Doc) -> str:
    out = [f"# {doc.title}", ""]
    for kind, value in doc.blocks:
        if kind == "h2":
            out += [f"## {value}", ""]
        elif kind == "p":
            out += [value, ""]
        elif kind == "table":
            out += [table_markdown(value), ""]
        elif kind == "figure":
            out += [f"![{value.caption}](figures/{value.name})", "", f"*{value.caption}*", ""]
        elif kind == "kv":
            out += [f"- **{k}**: {_plain(v)}" for k, v in value.items()] + [""]
        elif kind == "code":
            out += ["```", value, "```", ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1400px;
color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table.results{border-collapse:collapse;font-size:.85em;margin:1em 0}
table.results th,table.results td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:right}
table.results th{background:#f0f3f7}table.results td:first-child,table.results th:first-child{text-align:left}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
div.scroll{overflow-x:auto}table.results td{max-width:16em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}ul.kv{font-size:.9em}
code{background:#f0f3f7;padding:0 .2em;border-radius:3px;font-size:.9em}p.note{font-size:.85em;color:#444}"""


def render_html(doc: Doc) -> str:
    """The document as one self-contained page: CSS inline, figures embedded as base64 PNG."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(doc.title)}</h1>",
    ]
    for kind, value in doc.blocks:
        if kind == "h2":
            out.append(f"<h2>{esc(value)}</h2>")
        elif kind == "p":
            out.append("<p>" + inline_html(esc(value)) + "</p>")
        elif kind == "table":
            out.append(table_html(value))
        elif kind == "figure":
            data = base64.b64encode(value.png).decode()
            out.append(
                f'<figure><img alt="{esc(value.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(value.caption)}</figcaption></figure>"
            )
        elif kind == "kv":
            out.append(
                '<ul class="kv">'
                + "".join(f"<li><b>{esc(str(k))}</b>: {esc(_plain(v))}</li>" for k, v in value.items())
                + "</ul>"
            )
        elif kind == "code":
            out.append(f"<pre>{esc(value)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "none recorded"
    return str(value)
