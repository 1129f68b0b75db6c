"""Training step time of regularizers relative to ERM, on the same model and the same batch.

Each method trains the same SmallCNN with a real Lightning Trainer (RobustClassifier, SGD) on one fixed
batch repeated; a callback times each optimizer step (forward, backward, the regularizer's extra passes
and the update). Methods run in interleaved rounds so that load changes hit all of them alike, and the
median step time is compared with ERM's. Targets from the issue: Mixup and CutMix <= 1.05x, SAM <= 2.1x,
TRADES-10 <= 11.5x.

Usage:
    .venv/bin/python benchmarks/training_overhead.py --batch 128 --width 32 --steps 8 --rounds 3
    .venv/bin/python benchmarks/training_overhead.py --device cuda --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustlit.callbacks import SAM, TRADES, CutMix, Mixup
from robustlit.module import RobustClassifier

METHODS: dict[str, tuple[Callable[[], list[L.Callback]], float | None]] = {
    "ERM": (lambda: [], None),
    "Mixup": (lambda: [Mixup(mixup_alpha=0.2, seed=0)], 1.05),
    "CutMix": (lambda: [CutMix(cutmix_alpha=1.0, seed=0)], 1.05),
    "SAM": (lambda: [SAM(rho=0.05)], 2.1),
    "TRADES-10": (lambda: [TRADES(beta=6.0, steps=10)], 11.5),
}


class StepTimer(L.Callback):
    """Wall time of every training step after the warm-up steps."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup = warmup
        self.device = device
        self.times: list[float] = []

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync()
        self._began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._began)


def run(method: str, args: argparse.Namespace, batch: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    """Per-step times of ``method`` over ``args.warmup + args.steps`` steps on the repeated batch."""
    torch.manual_seed(0)
    model = RobustClassifier({"arch": "smallcnn", "width": args.width, "checkpoint": None}, num_classes=10,
                             in_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                             optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9))
    timer = StepTimer(args.warmup, args.device)
    steps = args.warmup + args.steps
    x, y = batch
    data = TensorDataset(x.repeat(steps, 1, 1, 1), y.repeat(steps))
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, precision=args.precision,
        max_steps=steps, callbacks=[*METHODS[method][0](), timer], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=x.shape[0]))
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per method and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batch = (torch.rand(args.batch, 3, args.image_size, args.image_size, generator=generator),
             torch.randint(0, 10, (args.batch,), generator=generator))
    methods = ["ERM", *[m for m in args.methods if m != "ERM"]]
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for method in methods:
            times[method] += run(method, args, batch)
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"# {device}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
          f"SmallCNN width {args.width}, batch {args.batch}x3x{args.image_size}x{args.image_size}, {args.precision}, "
          f"{args.rounds} rounds x {args.steps} steps")
    erm = statistics.median(times["ERM"])
    print(f"{'method':<10} {'ms/step':>9} {'x ERM':>7} {'target':>7}  verdict")
    for method in methods:
        step = statistics.median(times[method])
        ratio = step / erm
        target = METHODS[method][1]
        verdict = "" if target is None else ("meets" if ratio <= target else "MISSES")
        print(f"{method:<10} {1000 * step:>9.1f} {ratio:>7.2f} {'' if target is None else f'{target:.2f}':>7}  "
              f"{verdict}")


if __name__ == "__main__":
    main()
