"""The named models of the paper: one table from a preset's name to its ``Preset`` (encoder builder
arguments, size, quant convs, paper label, paper rows). Torch-free; adding a preset is one entry.
Who reads it and where the widths come from: docs/models.md, "The preset registry".
"""

from __future__ import annotations

from dataclasses import dataclass

from study.models.arguments import AutoencoderArgs, EncoderArgs, LiteVAEArgs, LiteVAEWidths, SDEncoderArgs


class UnknownPresetError(ValueError):
    """A preset name, or a size of an encoder kind, that the registry does not hold."""


@dataclass(frozen=True)
class PaperRow:
    """Where the paper prints this model: the table id and the row's label in it."""

    table: str
    label: str


@dataclass(frozen=True)
class Preset:
    encoder: EncoderArgs  # the encoder's builder arguments, the paper's defaults
    size: str  # its width's name in the experiment config (see ``kind``)
    quant_conv: bool  # LDM's 1x1 quant / post-quant convs around the latent
    paper_label: str  # the model's name in the paper's text and Tables 1, 2a, 2b
    paper_rows: tuple[PaperRow, ...]  # every table row that reports this model itself

    @property
    def kind(self) -> str:
        """``litevae`` (size: EncoderConfig.preset) or ``sdvae`` (size: EncoderConfig.sd_width)."""
        return "litevae" if isinstance(self.encoder, LiteVAEArgs) else "sdvae"

    def paper_row(self, table: str) -> str | None:
        """This model's row label in ``table``, or None where the table does not report it."""
        return next((r.label for r in self.paper_rows if r.table == table), None)


def _rows(*pairs: tuple[str, str]) -> tuple[PaperRow, ...]:
    return tuple(PaperRow(table, label) for table, label in pairs)


def _litevae(size: str, widths: LiteVAEWidths, *tables: str) -> Preset:
    name = f"LiteVAE-{size}"
    return Preset(LiteVAEArgs(widths), size, False, name, _rows(*((t, name) for t in tables)))


# The one table. Parameter counts (nz = 4, encoder incl. quant conv; pinned in tests/test_models.py):
# S 1.036 M, B 6.751 M, M 32.750 M, L 41.422 M (Table 3: 1.03 / 6.75 / 32.75 / 41.42),
# SD-VAE 34.16 M (Table 3), VAE-Small 6.73 M (Table 2b: 6.75).
PRESETS: dict[str, Preset] = {
    "LiteVAE-S": _litevae("S", LiteVAEWidths(16, (1, 2, 2), 16, (1, 2, 2)), "2a", "3"),
    "LiteVAE-B": _litevae("B", LiteVAEWidths(32, (1, 2, 3), 32, (1, 2, 3)), "1", "2a", "2b", "3"),
    "LiteVAE-M": _litevae("M", LiteVAEWidths(64, (1, 2, 4), 32, (1, 2, 3)), "2a", "3"),
    "LiteVAE-L": _litevae("L", LiteVAEWidths(64, (1, 2, 4), 64, (1, 2, 4)), "2a", "3"),
    # The SD-VAE baseline keeps LDM's 1x1 quant convs (they are in its 34.16 M).
    "SD-VAE": Preset(
        SDEncoderArgs(128, (1, 2, 4, 4)),
        "full",
        True,
        "VAE",
        _rows(("1", "VAE"), ("2a", "VAE"), ("2b", "VAE"), ("3", "VAE (SD-VAE encoder)")),
    ),
    # Paper gap: VAE-Small's widths are not given (Table 2b); ours are in sdvae.py's docstring.
    "VAE-Small": Preset(SDEncoderArgs(64, (1, 1, 3, 4)), "small", True, "VAE-Small", _rows(("2b", "VAE-Small"))),
}


def preset(name: str) -> Preset:
    """The registry's entry for ``name`` (e.g. "LiteVAE-B")."""
    if name not in PRESETS:
        raise UnknownPresetError(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_args(name: str, latent_channels: int = 4) -> AutoencoderArgs:
    """The paper's autoencoder ``name`` with an nz-channel latent and the SD decoder."""
    p = preset(name)
    return AutoencoderArgs(p.encoder, latent_channels, p.quant_conv)


def sizes(kind: str) -> tuple[str, ...]:
    """The sizes the registry holds for an encoder kind: ("S", "B", "M", "L"), ("full", "small")."""
    return tuple(p.size for p in PRESETS.values() if p.kind == kind)


def by_size(kind: str, size: str) -> Preset:
    """The preset of encoder ``kind`` whose width is called ``size`` in the experiment config."""
    for p in PRESETS.values():
        if p.kind == kind and p.size == size:
            return p
    raise UnknownPresetError(f"unknown {kind} size {size!r}; allowed: {', '.join(sizes(kind))}")


def litevae_widths(size: str) -> LiteVAEWidths:
    """F_l / F_agg widths of LiteVAE-``size`` (``size`` in S, B, M, L)."""
    encoder = by_size("litevae", size).encoder
    assert isinstance(encoder, LiteVAEArgs)
    return encoder.widths


def sd_encoder_args(size: str) -> SDEncoderArgs:
    """The SD-VAE encoder of width ``size`` ("full": LDM KL-f8, "small": VAE-Small)."""
    encoder = by_size("sdvae", size).encoder
    assert isinstance(encoder, SDEncoderArgs)
    return encoder


def paper_labels(table: str) -> dict[str, str]:
    """Preset name -> its row label in the paper's ``table``, for the presets that table reports
    (e.g. ``paper_labels("3")["SD-VAE"] == "VAE (SD-VAE encoder)"``; VAE-Small is not in Table 3)."""
    return {name: label for name, p in PRESETS.items() if (label := p.paper_row(table)) is not None}
