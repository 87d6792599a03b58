"""What holds the demo's training back: one setting of the embedded default (ablations/smoke.yaml)
trained with a plain loop on the harness's models, data and losses, printing the validation PSNR
of the weights (and of their EMA) every ``--every`` steps, and the seconds it took. The settings
compared in docs/demo.md ran two at a time, one torch thread each, on this project's 2-core CPU:

    python benchmarks/demo_learning.py --set train.batch_size=16 train.steps=400 \
        model.encoder.num_res_blocks=2 train.betas=[0.5,0.9] train.ema_decay=0   # issue 22's start
    python benchmarks/demo_learning.py --posterior-noise 0 ...                  # the mean as latent
    python benchmarks/demo_learning.py --loss mse ...                           # L2 instead of L1

The loop is the harness's step without its bookkeeping: reconstruction (L1, the paper's, or MSE),
the KL term as study.autoencoder.losses weighs it, Adam with train.betas, an EMA of the weights at
train.ema_decay (0: none). Validation: PSNR (dB, [0, 255] images) of the posterior mean's
reconstruction of the first ``--val-images`` evaluation crops, averaged over images.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import config  # noqa: E402
from study.autoencoder.losses import kl_loss  # noqa: E402
from study.data.datasets import eval_set, train_set  # noqa: E402
from study.models.autoencoder import build_autoencoder  # noqa: E402
from study.studyfile.grid import expand  # noqa: E402
from study.studyfile.parse import load_study  # noqa: E402

SMOKE = Path(__file__).resolve().parent.parent / "ablations" / "smoke.yaml"


def psnr(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        x_hat = model.decode(model.encode(x).mean).clamp(-1, 1)
    mse = ((x_hat - x) / 2).square().mean(dim=(1, 2, 3))
    return float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides of the demo's first variant")
    p.add_argument("--variant", type=int, default=0, help="which of the demo's variants (0: GroupNorm)")
    p.add_argument("--loss", choices=["l1", "mse"], default="l1")
    p.add_argument("--posterior-noise", type=float, default=1.0, help="z = mean + this * std * eps")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--val-images", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = config.apply_overrides(expand(load_study(SMOKE))[args.variant].config, overrides)
    torch.manual_seed(args.seed)
    model = build_autoencoder(config.autoencoder_args(cfg.model))
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.train.ema_decay > 0 else None
    opt = torch.optim.Adam(model.parameters(), cfg.train.lr, betas=(cfg.train.betas[0], cfg.train.betas[1]))
    r, batch = cfg.data.resolution, cfg.train.batch_size
    train = train_set(cfg.data, r, args.seed)
    held_out = eval_set(cfg.data, r, args.val_images)
    x_val = torch.stack([held_out[i] for i in range(len(held_out))])
    curve, start = [], time.perf_counter()
    for step in range(cfg.train.steps):
        x = torch.stack([train[step * batch + i] for i in range(batch)])
        q = model.encode(x)
        x_hat = model.decode(q.mean + args.posterior_noise * q.std * torch.randn_like(q.mean))
        d = x_hat - x
        rec = d.abs().mean() if args.loss == "l1" else d.square().mean()
        loss = rec + cfg.loss.kl_weight * kl_loss(q, x[0].numel())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, w in zip(ema.parameters(), model.parameters()):
                    e.lerp_(w, 1 - cfg.train.ema_decay)
        if (step + 1) % args.every == 0:
            point = {"step": step + 1, "psnr": round(psnr(model, x_val), 2), "s": round(time.perf_counter() - start)}
            if ema is not None:
                point["psnr_ema"] = round(psnr(ema, x_val), 2)
            curve.append(point)
            print(json.dumps(point), flush=True)
    print(json.dumps({"set": args.set, "loss": args.loss, "posterior_noise": args.posterior_noise, "curve": curve}))


if __name__ == "__main__":
    main()
