"""The models are a leaf with one registry: study/models imports nothing of the harness, the
registry holds exactly the six presets of Tables 2 and 3, its labels find the paper's rows, its
models have the paper's parameter counts (tests/test_config.py: the config derives from it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from study import config as cfgmod
from study.models import registry
from study.models.autoencoder import EncoderConfigError, build_encoder, build_preset
from study.paper import paper_table

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "study" / "models"
SIX = ("LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L", "SD-VAE", "VAE-Small")
REPRODUCED = ("1", "2a", "2b", "3")  # the tables whose rows are the presets themselves

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# the leaf
# --------------------------------------------------------------------------------------------
def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in the file (relative imports resolved)."""
    package = "study.models"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                out += [f"{base}.{node.module}"] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            else:
                out.append(node.module or "")
    return out


def test_models_import_nothing_of_the_harness():
    files = sorted(MODELS_DIR.glob("*.py"))
    assert {"registry.py", "arguments.py", "autoencoder.py", "litevae.py"} <= {f.name for f in files}
    outside = {
        f"{f.name}: {m}"
        for f in files
        for m in imported_modules(f)
        if (m == "study" or m.startswith("study.")) and not m.startswith("study.models")
    }
    assert not outside


def test_the_leaf_check_sees_a_harness_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from study.config import ModelConfig\n    from .. import paper\n")
    assert imported_modules(probe) == ["study.config", "study.paper"]


# --------------------------------------------------------------------------------------------
# the one table
# --------------------------------------------------------------------------------------------
def test_the_registry_holds_exactly_the_six_presets():
    assert tuple(registry.PRESETS) == SIX
    assert tuple(cfgmod.MODEL_PRESETS) == SIX
    assert registry.sizes("litevae") == ("S", "B", "M", "L")
    assert registry.sizes("sdvae") == ("full", "small")


def test_every_paper_row_is_in_the_papers_tables_and_every_model_row_has_a_preset():
    for table in REPRODUCED:
        t = paper_table(table)
        printed = set(t["encoder" if table == "3" else "row"])
        assert set(registry.paper_labels(table).values()) == printed, table


def test_table3_labels_are_the_ones_the_report_and_complexity_used():
    assert registry.paper_labels("3") == {
        "LiteVAE-S": "LiteVAE-S",
        "LiteVAE-B": "LiteVAE-B",
        "LiteVAE-M": "LiteVAE-M",
        "LiteVAE-L": "LiteVAE-L",
        "SD-VAE": "VAE (SD-VAE encoder)",
    }
    assert registry.preset("SD-VAE").paper_label == "VAE"
    assert registry.preset("VAE-Small").paper_row("3") is None


@pytest.mark.parametrize("name", SIX)
def test_each_preset_has_the_papers_encoder_parameter_count(name):
    """Against every params_m the paper prints for the model (Tables 1, 2a, 2b, 3): within 0.6 %
    (LiteVAE-S counts 1.0358 M, printed 1.03; VAE-Small's widths are our choice, 6.73 vs 6.75)."""
    with torch.device("meta"):
        model = build_preset(name)
    ours = sum(p.numel() for m in model.encoder_modules() for p in m.parameters()) / 1e6
    printed = []
    for row in registry.preset(name).paper_rows:
        t = paper_table(row.table)
        printed += list(t.loc[t["encoder" if row.table == "3" else "row"] == row.label, "params_m"])
    assert printed
    for paper_m in printed:
        assert ours == pytest.approx(paper_m, rel=0.006), (name, paper_m)


def test_unknown_names_are_named_errors():
    with pytest.raises(registry.UnknownPresetError, match="LiteVAE-S"):
        registry.preset("LiteVAE-XL")
    with pytest.raises(registry.UnknownPresetError, match="full, small"):
        registry.sd_encoder_args("tiny")
    with pytest.raises(EncoderConfigError):
        build_encoder(registry.litevae_widths("S"), 4)  # type: ignore[arg-type]  # widths, not args
