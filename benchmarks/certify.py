"""Certification benchmarks: smoothing throughput against batch size, IBP training overhead, and smoothed accuracy.

Sections (``--sections``):
    throughput  noisy samples per second of ``smoothing_counts`` on a SmallCNN, per ``batch_size``, next to the
                plain forward throughput of the same model at that batch size.
    overhead    time per training step (forward, backward, SGD step) of ERM, IBP and CROWN-IBP on a SmallCNN.
    accuracy    train a SmallCNN with Gaussian noise (σ = 0.25) on digits, then certify the test split with
                randomized smoothing and print certified accuracy at radii 0, 0.25, 0.5, 0.75.

Usage:
    .venv/bin/python benchmarks/certify.py
    .venv/bin/python benchmarks/certify.py --device cuda --sections throughput overhead --width 32
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from robustlit.certify import margin_lower_bounds, robust_cross_entropy, smoothed_certify, smoothing_counts
from robustlit.data import DigitsDataModule
from robustlit.models import SmallCNN


def timed(run: Callable[[], object], device: str, repeats: int = 1) -> float:
    """Seconds per call of ``run`` (after one warm-up call), synchronizing the GPU."""
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats


def throughput(args: argparse.Namespace) -> None:
    """Noisy samples per second of smoothing_counts against batch size."""
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, in_channels=args.channels, width=args.width).to(args.device).eval()
    x = torch.rand(args.points, args.channels, args.size, args.size, device=args.device)
    print(f"\n## smoothing throughput: SmallCNN width {args.width}, {args.channels}x{args.size}x{args.size}, "
          f"{args.points} points x {args.draws} draws")
    print("| batch_size | noisy samples/s | points/s at n=100k | plain forward images/s | ratio |")
    print("|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        seconds = timed(lambda b=batch_size: smoothing_counts(model, x, sigma=0.25, num=args.draws, batch_size=b),
                        args.device)
        rate = args.points * args.draws / seconds
        images = torch.rand(batch_size, args.channels, args.size, args.size, device=args.device)
        with torch.no_grad():
            forward = batch_size / timed(lambda i=images: model(i), args.device, repeats=3)
        print(f"| {batch_size} | {rate:,.0f} | {rate / 100_100:.3f} | {forward:,.0f} | {rate / forward:.2f} |")


def overhead(args: argparse.Namespace) -> None:
    """Training-step time of IBP and CROWN-IBP relative to ERM."""
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, in_channels=args.channels, width=args.width).to(args.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(args.train_batch, args.channels, args.size, args.size, device=args.device)
    y = torch.randint(0, 10, (args.train_batch,), device=args.device)

    def step(methods: tuple[str, ...]) -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if methods:
            margins = margin_lower_bounds(model, x, y, 2 / 255, methods)
            bound = sum(margins.values()) / len(margins)
            loss = 0.5 * loss + 0.5 * robust_cross_entropy(bound, y)
        loss.backward()
        optimizer.step()

    print(f"\n## training-step overhead: SmallCNN width {args.width}, batch {args.train_batch}, "
          f"{args.channels}x{args.size}x{args.size}")
    print("| objective | ms/step | × ERM |")
    print("|---|---|---|")
    erm = timed(lambda: step(()), args.device, repeats=args.repeats)
    for name, methods in (("ERM", ()), ("IBP", ("ibp",)), ("CROWN-IBP (β > 0)", ("ibp", "crown-ibp"))):
        seconds = erm if not methods else timed(lambda m=methods: step(m), args.device, repeats=args.repeats)
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / erm:.2f} |")


def accuracy(args: argparse.Namespace) -> None:
    """Certified accuracy of a Gaussian-noise-trained SmallCNN on digits."""
    torch.manual_seed(0)
    datamodule = DigitsDataModule(image_size=args.digits_size, batch_size=128)
    datamodule.setup("fit")
    datamodule.setup("test")
    model = SmallCNN(num_classes=10, in_channels=1, width=args.width, mean=tuple(datamodule.mean),
                     std=tuple(datamodule.std)).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    began = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for x, y in datamodule.train_dataloader():
            x, y = x.to(args.device), y.to(args.device)
            optimizer.zero_grad()
            F.cross_entropy(model(x + args.sigma * torch.randn_like(x)), y).backward()
            optimizer.step()
    train_seconds = time.perf_counter() - began
    model.eval()
    xs, ys = zip(*[(x, y) for x, y in datamodule.test_dataloader()], strict=True)
    x, y = torch.cat(xs)[: args.test_points].to(args.device), torch.cat(ys)[: args.test_points].to(args.device)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).double().mean())
    began = time.perf_counter()
    result = smoothed_certify(model, x, sigma=args.sigma, n0=100, n=args.n, alpha=0.001,
                              sample_ids=torch.arange(len(y), device=args.device), batch_size=args.batch_sizes[-1])
    certify_seconds = time.perf_counter() - began
    radii = [0.0, 0.25, 0.5, 0.75]
    print(f"\n## smoothed SmallCNN (width {args.width}) on digits {args.digits_size}x{args.digits_size}, "
          f"σ={args.sigma}, {args.epochs} epochs ({train_seconds:.0f} s), {len(y)} test points, n0=100, n={args.n}, "
          f"α=0.001 ({certify_seconds:.0f} s)")
    print(f"base-classifier clean accuracy {clean:.3f}; abstain rate {result.abstain_rate:.3f}; "
          f"median radius {result.median_radius(y.cpu()):.3f}")
    print("| radius | " + " | ".join(str(r) for r in radii) + " |")
    print("|---|" + "---|" * len(radii))
    print("| certified accuracy | " + " | ".join(f"{a:.3f}" for a in result.certified_accuracy(y.cpu(), radii)) + " |")


SECTIONS = {"throughput": throughput, "overhead": overhead, "accuracy": accuracy}


def main() -> None:
    """Parse the options and run the chosen sections."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1000, 4000])
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--test-points", type=int, default=None, help="certify only the first digits test points")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"robustlit certify benchmark on {args.device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for section in args.sections:
        SECTIONS[section](args)


if __name__ == "__main__":
    main()
