"""Corruption benchmarks: speed against ``imagecorruptions``, CIFAR-10-C generation time, and a model's error table.

Usage::

    python benchmarks/corruptions.py speed --n 8              # per-image time at 224 px, ours vs imagecorruptions
    python benchmarks/corruptions.py generate --n 1000        # full 19 x 5 CIFAR-10-C for n test images
    python benchmarks/corruptions.py errors --n 1000 \\
        --model ../shared/models/smallcnn_std.torchscript.pt --data /tmp/cifar/test

Each mode prints a Markdown table. ``--threads`` sets torch's CPU threads (2 by default, the project's target).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from robustlit.corruptions import CORRUPTIONS, STANDARD, corrupt
from robustlit.data import ImageFolderDataModule
from robustlit.models import load_checkpoint
from robustlit.suites import CorruptionSuite

# imagecorruptions 1.1.2 crashes on these with current NumPy / scikit-image (removed np.float_ and multichannel=).
PEER_BROKEN = ("glass_blur", "gaussian_blur", "fog")


def _photos(size: int, n: int) -> np.ndarray:
    """``n`` uint8 ``(size, size, 3)`` centre crops of scikit-image's bundled photographs (repeated as needed)."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    names = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg")
    images = []
    for i in range(n):
        image = Image.open(folder / names[i % len(names)]).convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        images.append(np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)))
    return np.stack(images)


def speed(args: argparse.Namespace) -> None:
    """Milliseconds per image for every corruption and severity, ours (one batch) against imagecorruptions."""
    try:
        import imagecorruptions
    except ImportError as error:  # e.g. no pkg_resources (setuptools >= 80)
        print(f"imagecorruptions unavailable ({error}); timing robustlit only\n")
        imagecorruptions = None
    if args.no_peer:
        imagecorruptions = None
    images = _photos(args.size, args.n)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(args.device)
    print("| corruption | imagecorruptions ms/img | robustlit ms/img | speed-up |\n|---|---|---|---|")
    total_peer = total_ours = total_ours_comparable = 0.0
    for name in CORRUPTIONS:
        ours = peer = 0.0
        for severity in range(1, 6):
            corrupt(x[:1], name, severity)  # warm caches (filter matrices, schedules)
            _sync(args.device)
            began = time.perf_counter()
            corrupt(x, name, severity, sample_ids=torch.arange(args.n))
            _sync(args.device)
            ours += time.perf_counter() - began
            if imagecorruptions is not None and name not in PEER_BROKEN:
                np.random.seed(severity)
                began = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for image in images:
                        imagecorruptions.corrupt(image, severity=severity, corruption_name=name)
                peer += time.perf_counter() - began
        ours_ms, peer_ms = 1000 * ours / (5 * args.n), 1000 * peer / (5 * args.n)
        total_ours += ours_ms
        if imagecorruptions is None or name in PEER_BROKEN:
            print(f"| {name} | {'crashes' if imagecorruptions else '-'} | {ours_ms:.1f} | - |")
        else:
            total_peer += peer_ms
            total_ours_comparable += ours_ms
            print(f"| {name} | {peer_ms:.1f} | {ours_ms:.1f} | {peer_ms / ours_ms:.1f}× |")
    if total_peer:
        print(f"| **all 16 that both run** | {total_peer:.1f} | {total_ours_comparable:.1f} | "
              f"{total_peer / total_ours_comparable:.1f}× |")
    print(f"| all 19 (ours) | | {total_ours:.1f} | |")


def generate(args: argparse.Namespace) -> None:
    """Seconds to corrupt ``n`` CIFAR-10 test images with all 19 corruptions at 5 severities."""
    if args.images:  # uint8 (N, H, W, 3) array, tiled up to n images (ids stay distinct)
        stored = torch.from_numpy(np.load(args.images)).permute(0, 3, 1, 2).float().div(255)
        x = stored.repeat(-(-args.n // len(stored)), 1, 1, 1)[: args.n].to(args.device)
    else:
        dm = ImageFolderDataModule(args.data, limit_test=args.n, batch_size=args.n)
        x = next(iter(dm.test_dataloader()))[0].to(args.device)
    ids = torch.arange(args.n)
    print("| corruption | seconds (5 severities) |\n|---|---|")
    total = 0.0
    for name in CORRUPTIONS:
        began = time.perf_counter()
        for severity in range(1, 6):
            for start in range(0, args.n, args.batch_size):
                stop = start + args.batch_size
                corrupt(x[start:stop], name, severity, sample_ids=ids[start:stop])
        _sync(args.device)
        seconds = time.perf_counter() - began
        total += seconds
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **total, {args.n} images** | {total:.1f} |")
    print(f"| extrapolated to 10,000 images | {total * 10000 / args.n:.0f} |")


def errors(args: argparse.Namespace) -> None:
    """Error per corruption and severity of a checkpoint on a seeded subset of an ImageFolder test set."""
    model = load_checkpoint(args.model).to(args.device).eval()
    if args.images:  # the same seeded subset saved as arrays: images (N, H, W, 3) uint8, labels next to them
        images = torch.from_numpy(np.load(args.images)).permute(0, 3, 1, 2).float().div(255)
        labels = torch.from_numpy(np.load(args.images.replace(".npy", "_labels.npy")))
        loader = DataLoader(TensorDataset(images[: args.n], labels[: args.n]), batch_size=args.batch_size)
    else:
        loader = ImageFolderDataModule(args.data, limit_test=args.n, batch_size=args.batch_size).test_dataloader()
    suite = CorruptionSuite(corruptions="all", severities=[1, 2, 3, 4, 5], seed=0)
    began = time.perf_counter()
    rows = suite.evaluate(model, _on_device(loader, args.device))
    seconds = time.perf_counter() - began
    table = {(m.context["corruption"], m.context["severity"]): m.value for m in rows if m.name == "error"}
    clean = 1 - float(suite.stored("clean").float().mean())
    print(f"clean error {clean:.3f} on {args.n} images; {seconds:.0f} s\n")
    print("| corruption | s1 | s2 | s3 | s4 | s5 | mean |\n|---|---|---|---|---|---|---|")
    for name in CORRUPTIONS:
        values = [table[(name, s)] for s in range(1, 6)]
        cells = " | ".join(f"{v:.3f}" for v in values)
        print(f"| {name}{' (extra)' if name not in STANDARD else ''} | {cells} | **{np.mean(values):.3f}** |")
    standard = np.mean([table[(n, s)] for n in STANDARD for s in range(1, 6)])
    print(f"| **mean of the 15 standard (unnormalized mCE)** | | | | | | **{standard:.3f}** |")


def _on_device(loader: DataLoader, device: str):
    for x, y in loader:
        yield x.to(device), y.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("speed", "generate", "errors"))
    parser.add_argument("--n", type=int, default=8, help="number of images")
    parser.add_argument("--size", type=int, default=224, help="image side for the speed mode")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data", default="/tmp/cifar/test", help="CIFAR-10 test ImageFolder")
    parser.add_argument("--images", help="a uint8 (N, H, W, 3) .npy instead of --data (errors: with *_labels.npy)")
    parser.add_argument("--model", default="../shared/models/smallcnn_std.torchscript.pt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-peer", action="store_true", help="speed mode: time robustlit only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}\n")
    {"speed": speed, "generate": generate, "errors": errors}[args.mode](args)


if __name__ == "__main__":
    main()
