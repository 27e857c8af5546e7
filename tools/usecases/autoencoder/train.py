"""Train the dense autoencoder of handwritten digits that ships in tools/assets/digits_ae.pt.

Reads top to bottom: seeded split of scikit-learn's 8x8 digits (or MNIST IDX files with --data),
Adam on the mean squared reconstruction error of the train split, one thread, fixed seed; the
checkpoint with the best validation PSNR is kept. Same seed, same weights (on the same torch build).

    python -m tools.usecases.autoencoder.train --out tools/assets/digits_ae.pt
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tools.usecases.autoencoder.digits import DigitSplits, load
from tools.usecases.autoencoder.model import (
    CODE,
    DECODER_WIDTHS,
    ENCODER_WIDTHS,
    Autoencoder,
    default_autoencoder_path,
    mean_psnr,
    save_autoencoder,
)


@dataclass
class TrainConfig:
    """Every hyperparameter of the autoencoder training, one line each."""

    seed: int = 0
    """seed of the data split, the initial weights and the mini-batch order"""
    epochs: int = 400
    """passes over the train split"""
    batch: int = 64
    """images per Adam step"""
    lr: float = 2e-3
    """Adam learning rate (cosine-decayed to zero)"""
    encoder_widths: tuple[int, ...] = ENCODER_WIDTHS
    """hidden widths of the encoder"""
    code: int = CODE
    """width of the bottleneck code"""
    decoder_widths: tuple[int, ...] = DECODER_WIDTHS
    """hidden widths of the decoder"""


def train(data: DigitSplits, cfg: TrainConfig, progress: bool = True) -> tuple[Autoencoder, dict]:
    """Fit an autoencoder on ``data.train``; return the best-on-val model and a summary."""
    torch.manual_seed(cfg.seed)
    model = Autoencoder(data.dim, cfg.encoder_widths, cfg.code, cfg.decoder_widths)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = -(-len(data.train) // cfg.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_psnr, start = copy.deepcopy(model.state_dict()), -float("inf"), time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc="train autoencoder", disable=not progress)
    for epoch in bar:
        model.train()
        for idx in torch.randperm(len(data.train), generator=gen).split(cfg.batch):
            x = data.train[idx]
            loss = torch.nn.functional.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            val = mean_psnr(model, data.val)
            if val > best_psnr:
                best, best_psnr = copy.deepcopy(model.state_dict()), val
            bar.set_postfix(val_psnr=f"{val:.2f}")
    model.load_state_dict(best)
    model.eval()
    summary = {
        "data": data.summary(),
        "train_config": asdict(cfg),
        "seconds": time.perf_counter() - start,
        "psnr": {
            "train": mean_psnr(model, data.train),
            "val": mean_psnr(model, data.val),
            "test": mean_psnr(model, data.test),
        },
    }
    return model, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.autoencoder.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=default_autoencoder_path())
    p.add_argument(
        "--data", type=Path, default=None, help="folder with MNIST IDX files (default: scikit-learn's 8x8 digits)"
    )
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # reproducible, and the machine is shared
    cfg = TrainConfig(seed=args.seed, epochs=args.epochs)
    print(f"train_autoencoder, seed {cfg.seed}: {asdict(cfg)}")
    data = load(args.data, cfg.seed)
    model, summary = train(data, cfg)
    save_autoencoder(model, args.out, summary)
    print(
        f"PSNR dB train {summary['psnr']['train']:.2f} val {summary['psnr']['val']:.2f} test {summary['psnr']['test']:.2f} "
        f"in {summary['seconds']:.1f}s; params {sum(p.numel() for p in model.parameters())}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
