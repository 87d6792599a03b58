"""The latent cache (study/diffusion/latents.py) on a real tiny autoencoder run: what it holds,
that it is written once and read by a second diffusion run, that a build resumes at shard
granularity with bitwise the same shards, and that two builders at once encode it once."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from study import store
from study.autoencoder.trained import load_trained
from study.diffusion import latents
from study.kinds.registry import run_id
from study.measure.latent_stats import channel_stats
from tests.diffusion_helpers import diffusion_cfg, tiny_autoencoder

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ae_folder(tmp_path_factory, one_thread):
    return tiny_autoencoder(tmp_path_factory.mktemp("results"))


def _mtimes(cache: latents.LatentCache) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in [*cache.shard_paths(), cache.folder / "meta.json"]}


def test_the_cache_holds_means_samples_and_flips_of_the_training_crops(ae_folder):
    cfg = diffusion_cfg(ae_folder, **{"diffusion.cache_images": 24})
    cache = latents.build_cache(cfg, ae_folder, CPU, progress=False, shard_size=10)
    assert cache.folder.parent == ae_folder / "latents" and not cache.reused
    assert cache.count == 24 and cache.shape == (4, 4, 4) and cache.meta["shards"] == 3
    assert [p.name for p in cache.shard_paths()] == [f"shard-0000{i}.safetensors" for i in range(3)]
    # the posterior mean of image i, and of its mirror image, as the frozen autoencoder gives them
    images, _ = latents.image_set(cfg.data, 32, 24)
    ae = load_trained(ae_folder, store.read_config(ae_folder), CPU)
    x = torch.stack([images[i] for i in (0, 23)])
    with torch.no_grad():
        (mean, std), flipped = (ae.encode(x).mean, ae.encode(x).std), ae.encode(torch.flip(x, dims=[3]))
        mean_flip = flipped.mean
    means = cache.load("mean")  # flips x images x C x h x w
    assert means.shape == (2, 24, 4, 4, 4)
    torch.testing.assert_close(means[0, [0, 23]], mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(means[1, [0, 23]], mean_flip, rtol=1e-5, atol=1e-5)
    samples = cache.load("sample")
    # a posterior sample: mean + std * eps, eps from image i's own generator (unflipped: 2 i)
    seeds = [latents.NOISE_SEED * 1_000_003 + 2 * i for i in (0, 23)]
    eps = torch.stack([torch.randn(4, 4, 4, generator=torch.Generator().manual_seed(s)) for s in seeds])
    torch.testing.assert_close(samples[0, [0, 23]], mean + std * eps, rtol=1e-5, atol=1e-5)
    assert not torch.equal(samples, means)
    # the statistics are those of every cached latent of a kind, both flips
    for kind, z in (("mean", means), ("sample", samples)):
        ref = channel_stats(z.flatten(0, 1))
        assert cache.stats(kind)["channel_mean"] == pytest.approx(list(ref.mean), rel=1e-9, abs=1e-12)
        assert cache.stats(kind)["channel_std"] == pytest.approx(list(ref.std), rel=1e-9)
        assert cache.scale_factor(kind) == pytest.approx(ref.scale_factor, rel=1e-9)


def test_a_second_diffusion_run_on_the_autoencoder_reads_the_cache(ae_folder):
    first = latents.build_cache(diffusion_cfg(ae_folder), ae_folder, CPU, progress=False, shard_size=16)
    before = _mtimes(first)
    # another diffusion run (another UNet, seed and lr) on the same autoencoder and data
    other = diffusion_cfg(ae_folder, seed=3, **{"diffusion.lr": 1e-4, "diffusion.steps": 7})
    second = latents.build_cache(other, ae_folder, CPU, progress=False, shard_size=16)
    assert second.reused and second.folder == first.folder and second.meta == first.meta
    assert _mtimes(second) == before
    assert latents.open_cache(other, ae_folder).meta == first.meta
    # what changes the latents changes the key: the flips, the crops, the resolution
    keys = {latents.cache_key(latents.cache_fields(diffusion_cfg(ae_folder, **o), ae_folder)) for o in (
        {}, {"data.hflip": False}, {"diffusion.cache_images": 32}, {"data.resolution": 64},
    )}  # fmt: skip
    assert len(keys) == 4


def test_a_killed_build_resumes_with_the_missing_shards_only_and_bitwise_the_same(ae_folder):
    cfg = diffusion_cfg(ae_folder, **{"diffusion.cache_images": 40})
    full = latents.build_cache(cfg, ae_folder, CPU, progress=False, shard_size=10)
    lost = full.shard_paths()[2]
    kept = load_file(str(lost))
    lost.unlink()  # as if the build had been killed while encoding shard 2, before meta.json
    (full.folder / "meta.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in full.shard_paths() if p != lost}
    with pytest.raises(latents.CacheNotBuilt):
        latents.open_cache(cfg, ae_folder)
    again = latents.build_cache(cfg, ae_folder, CPU, progress=False, shard_size=10)
    assert not again.reused and again.meta["encoded_shards"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in again.shard_paths() if p != lost} == before
    redone = load_file(str(lost))
    assert redone.keys() == kept.keys() and all(torch.equal(redone[k], kept[k]) for k in kept)
    assert again.meta["stats"] == full.meta["stats"]


def test_two_builders_at_once_encode_the_cache_once(ae_folder):
    cfg = diffusion_cfg(ae_folder, **{"diffusion.cache_images": 20})
    results: list[latents.LatentCache] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(latents.build_cache(cfg, ae_folder, CPU, progress=False, shard_size=10))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].meta == results[1].meta


def test_an_autoencoder_evaluated_as_a_checkpoint_is_encoded_with_its_init_weights(ae_folder):
    """A run with ``train.steps: 0`` and ``model.init`` (a checkpoint evaluated as it is) has no
    checkpoint of its own: its latents are those of the weights it names (here the trained run)."""
    from study import config
    from tests.launch_helpers import TINY_SET

    as_is = config.validate(
        config.apply_overrides(config.ExperimentConfig(), TINY_SET | {"train.steps": 0, "model.init": str(ae_folder)})
    )
    ckpt_folder = store.init_run(ae_folder.parent.parent, as_is, run_id(as_is))
    store.mark_done(ckpt_folder)
    assert not (ckpt_folder / "checkpoints").exists()
    over = {"diffusion.cache_images": 8}
    ours = latents.build_cache(diffusion_cfg(ae_folder, **over), ae_folder, CPU, progress=False)
    theirs = latents.build_cache(diffusion_cfg(ckpt_folder, **over), ckpt_folder, CPU, progress=False)
    assert theirs.folder.is_relative_to(ckpt_folder) and theirs.meta["key"] != ours.meta["key"]
    assert torch.equal(theirs.load("mean"), ours.load("mean"))


def test_an_image_folder_is_cached_whole_as_center_crops_of_its_training_list(ae_folder, tmp_path):
    """Every file of the list, the autoencoder's held-out part (data.val_fraction) included: a
    diffusion run evaluates nothing on it, and LDM trains on its whole train split."""
    import numpy as np
    from PIL import Image

    from study.data.datasets import FolderEval, folder_split, image_files

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / f"img{i:02d}.png")
    cfg = diffusion_cfg(ae_folder, **{"data.kind": "folder", "data.path": str(tmp_path), "data.val_fraction": 0.25})
    _, train, heldout = folder_split(cfg.data, 32)
    assert train and heldout
    files = image_files(tmp_path)
    assert sorted(files) == sorted(train + heldout)
    cache = latents.build_cache(cfg, ae_folder, CPU, progress=False, shard_size=4)
    assert cache.count == len(files) == 12 and cache.meta["shards"] == 3
    crops = FolderEval(tmp_path, files, 32)
    ae = load_trained(ae_folder, store.read_config(ae_folder), CPU)
    with torch.no_grad():
        mean = ae.encode(torch.stack([crops[i] for i in range(len(files))])).mean
    torch.testing.assert_close(cache.load("mean")[0], mean, rtol=1e-5, atol=1e-5)
