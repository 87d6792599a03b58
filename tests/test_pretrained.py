"""Pretrained checkpoints (study/autoencoder/pretrained.py) against diffusers itself: a small
AutoencoderKL initialised by diffusers and saved with ``save_pretrained``, the same weights as an
LDM ``.ckpt`` and ``.safetensors``, each loaded into our model, which must reconstruct what
diffusers' model reconstructs; diffusers' own LDM converter reads our LDM names back; a
mismatching config fails naming the keys; runs load by id and folder."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import save_file

from study import store
from study.autoencoder import pretrained
from study.models.arguments import AutoencoderArgs, DecoderArgs, LiteVAEArgs, SDEncoderArgs
from study.models.autoencoder import Autoencoder, build_autoencoder, build_preset
from study.models.registry import litevae_widths

pytestmark = pytest.mark.usefixtures("one_thread")

# The shared small SD layout: widths 32 / 64 / 64 / 64 (GroupNorm(32) divides each), one
# residual block per encoder level (so two per decoder level), 4 latent channels, 32x32 images.
WIDTH, MULT, ENC_BLOCKS, NZ, SIZE = 32, (1, 2, 2, 2), 1, 4, 32
TOL = 1e-4


def tiny_diffusers() -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=tuple(WIDTH * m for m in MULT),
        layers_per_block=ENC_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(MULT),
        up_block_types=("UpDecoderBlock2D",) * len(MULT),
        latent_channels=NZ,
        norm_num_groups=32,
    )
    with torch.no_grad():  # GroupNorm starts at (1, 0): perturb it so that a swapped norm shows
        for module in vae.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.add_(0.2 * torch.randn_like(module.weight))
                module.bias.add_(0.2 * torch.randn_like(module.bias))
    return vae.eval()


def tiny_ours(
    nz: int = NZ,
    quant_conv: bool = True,
    mult: tuple[int, ...] = MULT,
    encoder: LiteVAEArgs | SDEncoderArgs | None = None,
    decoder_blocks: int = ENC_BLOCKS + 1,
) -> Autoencoder:
    encoder = encoder or SDEncoderArgs(WIDTH, mult, num_res_blocks=ENC_BLOCKS)
    return build_autoencoder(AutoencoderArgs(encoder, nz, quant_conv, DecoderArgs(WIDTH, mult, decoder_blocks))).eval()


@pytest.fixture(scope="module")
def vae():
    return tiny_diffusers()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope="module")
def saved(vae, tmp_path_factory):
    """The same weights in every accepted form: name -> path."""
    root = tmp_path_factory.mktemp("pretrained")
    vae.save_pretrained(root / "diffusers")
    vae.save_pretrained(root / "diffusers-bin", safe_serialization=False)
    ours, _ = pretrained.translate(vae.state_dict(), "diffusers", "ours")
    ldm, _ = pretrained.translate(ours, "ours", "ldm")
    whole = {"first_stage_model." + k: v for k, v in ldm.items()}
    whole["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(3, 3)  # another model's part
    torch.save({"state_dict": whole, "global_step": 7}, root / "sd.ckpt")
    bare = {**ldm, "loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4)}  # LDM keeps its loss
    torch.save({"state_dict": bare}, root / "vae.ckpt")
    save_file({k: v.contiguous() for k, v in ldm.items()}, root / "vae.safetensors")
    legacy = root / "diffusers-legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps(dict(vae.config)))
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for key, value in vae.state_dict().items():
        for new, was in renames.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{was}.")
        old[key] = value.contiguous()
    save_file(old, legacy / "diffusion_pytorch_model.safetensors")
    return {
        "diffusers": root / "diffusers",
        "diffusers-bin": root / "diffusers-bin",
        "diffusers-legacy": legacy,
        "sd.ckpt": root / "sd.ckpt",
        "vae.ckpt": root / "vae.ckpt",
        "vae.safetensors": root / "vae.safetensors",
    }


def diffusers_reconstruction(vae, x):
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        return mean, vae.decode(mean).sample


# --------------------------------------------------------------------------------------------
# the same images as diffusers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "form", ["diffusers", "diffusers-bin", "diffusers-legacy", "sd.ckpt", "vae.ckpt", "vae.safetensors"]
)
def test_every_form_reconstructs_like_diffusers(vae, images, saved, form):
    ours = tiny_ours()
    report = pretrained.apply_init(ours, saved[form])
    assert report.naming == ("diffusers" if form.startswith("diffusers") else "ldm")
    assert report.loaded == len(ours.state_dict()) and report.skipped == ()
    mean, x_hat = diffusers_reconstruction(vae, images)
    with torch.no_grad():
        q = ours.encode(images)
        assert (q.mean - mean).abs().max() <= TOL
        assert (ours.decode(mean) - x_hat).abs().max() <= TOL
        assert (ours.decode(q.mean) - x_hat).abs().max() <= TOL
    assert x_hat.std() > 0.05  # a real image-sized signal, not a near-constant output


def test_diffusers_reads_our_ldm_names_as_ldm(vae, saved):
    """An independent check of the LDM naming: diffusers' own LDM converter turns our .ckpt into
    exactly diffusers' state dict (so our up-stage reversal and resampler names are LDM's)."""
    checkpoint = torch.load(saved["sd.ckpt"], weights_only=True)["state_dict"]
    converted = convert_ldm_vae_checkpoint(checkpoint, dict(vae.config))
    expected = vae.state_dict()
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)


def test_the_sd_vae_preset_has_the_stable_diffusion_layout():
    """The SD-VAE preset at full size (meta device, no weights) takes diffusers' SD AutoencoderKL
    (the configuration of Stable Diffusion's VAE) key for key and shape for shape, and its LDM
    names are LDM KL-f8's: the decoder's level 0 is ``up.0`` (128 wide, no upsampler)."""
    with torch.device("meta"):
        sd = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
        preset = build_preset("SD-VAE")
    ours, names = pretrained.translate(sd.state_dict(), "diffusers", "ours")
    pretrained.check_match(ours, preset.state_dict(), names, "SD AutoencoderKL")
    ldm, _ = pretrained.translate(preset.state_dict(), "ours", "ldm")
    assert tuple(ldm["decoder.up.0.block.0.nin_shortcut.weight"].shape) == (128, 256, 1, 1)
    assert tuple(ldm["decoder.up.3.upsample.conv.weight"].shape) == (512, 512, 3, 3)
    assert "decoder.up.0.upsample.conv.weight" not in ldm and "encoder.down.3.downsample.conv.weight" not in ldm
    assert tuple(ldm["encoder.mid.attn_1.q.weight"].shape) == (512, 512, 1, 1)
    assert (
        pretrained.detect_naming(list(ldm)) == "ldm" and pretrained.detect_naming(list(preset.state_dict())) == "ours"
    )


# --------------------------------------------------------------------------------------------
# mismatches
# --------------------------------------------------------------------------------------------
def test_a_different_latent_width_fails_naming_keys_and_shapes(saved):
    ours = tiny_ours(nz=3)
    before = ours.encoder.conv_in.weight.clone()
    with pytest.raises(pretrained.CheckpointMismatch) as err:
        pretrained.apply_init(ours, saved["vae.ckpt"])
    message = str(err.value)
    assert "shapes differ" in message
    assert "encoder.conv_out.weight checkpoint (8, 64, 3, 3) vs model (6, 64, 3, 3)" in message
    assert "quant_conv.weight checkpoint (8, 8, 1, 1) vs model (6, 6, 1, 1)" in message
    assert "model.latent_channels" in message
    assert torch.equal(ours.encoder.conv_in.weight, before)  # nothing was loaded


def test_missing_and_extra_modules_are_named_in_the_files_names(saved):
    with pytest.raises(pretrained.CheckpointMismatch) as err:
        pretrained.apply_init(tiny_ours(quant_conv=False), saved["diffusers"])
    message = str(err.value)
    assert "4 not in the model: " in message and "quant_conv.weight (8, 8, 1, 1)" in message
    with pytest.raises(pretrained.CheckpointMismatch) as err:  # one level fewer: the deepest stage is extra
        pretrained.apply_init(tiny_ours(mult=(1, 2, 2)), saved["vae.ckpt"])
    message = str(err.value)
    assert "not in the model: encoder.down.2.1.conv.weight [encoder.down.2.downsample.conv.weight]" in message
    assert "encoder.down.3.0.norm1.weight [encoder.down.3.block.0.norm1.weight] (64,)" in message


def test_a_litevae_variant_takes_the_sd_decoder_only(vae, saved):
    torch.manual_seed(0)
    litevae = LiteVAEArgs(litevae_widths("S"))
    ours = tiny_ours(encoder=litevae)
    encoder_side = {k: v.clone() for k, v in ours.state_dict().items() if not k.startswith(pretrained.DECODER_SIDE)}
    report = pretrained.apply_init(ours, saved["sd.ckpt"])
    assert "encoder.conv_in.weight" in report.skipped and "quant_conv.weight" in report.skipped
    state = ours.state_dict()
    assert all(torch.equal(state[k], v) for k, v in encoder_side.items())
    z = torch.randn(2, NZ, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours.decode(z) - vae.decode(z).sample).abs().max() <= TOL
    with pytest.raises(pretrained.CheckpointMismatch, match="decoder side only"):
        pretrained.apply_init(tiny_ours(encoder=litevae, decoder_blocks=3), saved["sd.ckpt"])  # 3 blocks a level


# --------------------------------------------------------------------------------------------
# our runs, identity, unreadable input
# --------------------------------------------------------------------------------------------
def test_a_run_loads_by_id_and_by_folder(saved, results_root):
    from study.autoencoder.loop import save_checkpoint

    trained = tiny_ours()
    pretrained.apply_init(trained, saved["diffusers"])
    folder = store.run_dir(results_root, "0123456789ab")
    save_checkpoint(folder, 3, trained, None, torch.optim.Adam(trained.parameters()), None)
    expected = trained.state_dict()
    for source in ("0123456789ab", folder):
        ours = tiny_ours()
        report = pretrained.apply_init(ours, source, root=results_root)
        assert report.naming == "ours"
        assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())
    store.run_dir(results_root, "fedcba987654").mkdir(parents=True)
    with pytest.raises(pretrained.CheckpointError, match="no checkpoint yet"):
        pretrained.load_state("fedcba987654", root=results_root)
    with pytest.raises(pretrained.CheckpointError, match="no such checkpoint"):
        pretrained.load_state("not-a-run", root=results_root)


def test_the_sha256_is_the_weights_files_and_guards_the_load(saved):
    weights = saved["diffusers"] / "diffusion_pytorch_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert pretrained.checkpoint_sha256(saved["diffusers"]) == digest == pretrained.checkpoint_sha256(weights)
    assert pretrained.checkpoint_sha256(saved["vae.ckpt"]) != digest
    assert pretrained.apply_init(tiny_ours(), saved["diffusers"], expected_sha256=digest).sha256 == digest
    with pytest.raises(pretrained.CheckpointError, match="the file changed"):
        pretrained.apply_init(tiny_ours(), saved["diffusers"], expected_sha256="0" * 64)


class NotATensor:
    pass


def test_a_file_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "callback": NotATensor()}, path)
    with pytest.raises(pretrained.CheckpointError, match="weights_only"):
        pretrained.load_state(path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(pretrained.CheckpointError, match="unknown checkpoint type"):
        pretrained.load_state(tmp_path / "notes.txt")
