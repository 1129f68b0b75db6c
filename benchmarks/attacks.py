"""Time and robust accuracy of robustlit's attacks next to torchattacks and the reference AutoAttack.

Runs every attack on the same CIFAR-10 test points and the shared adversarially trained SmallCNN, in
one process, and prints one row per attack with both libraries' numbers and the time ratio.

Peers (bench-only dependencies, installed without their pinned dependencies):
    .venv/bin/pip install --no-deps torchattacks==3.5.1 pyautoattack==0.2.0

robustlit's attacks query the model with channels-last inputs (its default for image batches; turn it
off with ``--contiguous``) and, with ``--precision bf16``, under bf16 autocast. Accuracies are always
counted by the plain fp32 model, so a faster setting can only show up as a weaker attack, never as a
stronger one.

Usage:
    .venv/bin/python benchmarks/attacks.py --n 200 --attacks pgd10 pgd50 apgd-ce autoattack
    .venv/bin/python benchmarks/attacks.py --n 100 --attacks autoattack --precision bf16
    .venv/bin/python benchmarks/attacks.py --n 100 --attacks autoattack-l1     # L1, eps = 12
    .venv/bin/python benchmarks/attacks.py --device cuda --n 1000 --precision bf16
"""

from __future__ import annotations

import argparse
import platform
import tarfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from robustlit.attacks import apgd, pgd
from robustlit.attacks.autoattack import autoattack
from robustlit.attacks.precision import accepts_channels_last, with_precision
from robustlit.data import ImageFolderDataModule
from robustlit.models import SmallCNN

SHARED = Path(__file__).resolve().parents[2] / "shared"
EPS, ALPHA = 8 / 255, 2 / 255
AUTOATTACK_THREATS = {"autoattack": ("Linf", EPS), "autoattack-l1": ("L1", 12.0)}
"""AutoAttack rows and their (norm, ε); 12 is the L1 radius of the reference's CIFAR-10 evaluations."""


def load_points(n: int, cache: Path) -> tuple[Tensor, Tensor]:
    """The first ``n`` points of robustlit's seeded CIFAR-10 test subset."""
    test_dir = cache / "test"
    if not test_dir.is_dir():
        with tarfile.open(SHARED / "data" / "cifar10-jpeg.tar.gz") as tar:
            tar.extractall(cache, members=[m for m in tar if m.name.startswith("test/")], filter="data")
    datamodule = ImageFolderDataModule(test_dir, limit_test=n, batch_size=n)
    return next(iter(datamodule.test_dataloader()))


def load_model(device: str) -> nn.Module:
    """The shared FGSM-trained SmallCNN, rebuilt from its state_dict so autocast and channels_last apply."""
    model = SmallCNN()
    model.load_state_dict(torch.load(SHARED / "models" / "smallcnn_fgsmat.state_dict.pt", weights_only=True))
    return model.eval().to(device)


def timed(run: Callable[[], Tensor], device: str) -> tuple[Tensor, float]:
    """Result and wall time of ``run()``, synchronizing the GPU around it."""
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = run()
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - began


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float((model(x).argmax(1) == y).float().mean())


def forward_backward_seconds(model: nn.Module, x: Tensor, y: Tensor, device: str, repeats: int = 5) -> float:
    """Median time of one forward and input-gradient backward pass on the batch."""
    times = []
    for _ in range(repeats):
        def step() -> Tensor:
            delta = torch.zeros_like(x, requires_grad=True)
            loss = nn.functional.cross_entropy(model(x + delta), y)
            return torch.autograd.grad(loss, delta)[0]

        times.append(timed(step, device)[1])
    return sorted(times)[len(times) // 2]


def ours(name: str, model: nn.Module, fast_model: nn.Module, x: Tensor, y: Tensor, precision: str,
         channels_last: bool) -> Tensor:
    """robustlit's adversarial examples for attack ``name``; single attacks query ``fast_model``."""
    if name.startswith("pgd"):
        return pgd(fast_model, x, y, eps=EPS, alpha=ALPHA, steps=int(name[3:]), keep_best=False)
    if name == "apgd-ce":
        return apgd(fast_model, x, y, eps=EPS, loss="ce", steps=100)
    if name in AUTOATTACK_THREATS:
        norm, eps = AUTOATTACK_THREATS[name]
        result = autoattack(model, x, y, eps=eps, norm=norm, version="standard", precision=precision,
                            channels_last=channels_last)
        print("  robustlit AutoAttack seconds per attack: "
              + ", ".join(f"{attack} {seconds:.1f}" for attack, seconds in result.seconds.items()))
        return result.adversarial
    raise ValueError(name)


def peer(name: str, model: nn.Module, x: Tensor, y: Tensor, device: str) -> tuple[str, Tensor]:
    """The peer library's version of attack ``name`` with the same settings."""
    import torchattacks

    if name.startswith("pgd"):
        return "torchattacks", torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=int(name[3:]))(x, y)
    if name == "apgd-ce":
        attack = torchattacks.APGD(model, norm="Linf", eps=EPS, steps=100, n_restarts=1, loss="ce", seed=0)
        return "torchattacks", attack(x, y)
    if name in AUTOATTACK_THREATS:
        from pyautoattack import AutoAttack

        norm, eps = AUTOATTACK_THREATS[name]
        reference = AutoAttack(model, eps=eps, norm=norm, version="standard", device=device, seed=0)
        adversarial = reference.run_standard_evaluation(x, y, batch_size=len(x))
        # pyautoattack returns (x_adv, y_adv) where the original returned x_adv alone
        return "fra31 reference", adversarial[0] if isinstance(adversarial, tuple) else adversarial
    raise ValueError(name)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="CIFAR-10 test points (default 200)")
    parser.add_argument("--attacks", nargs="+", default=["pgd10", "pgd50", "apgd-ce", "autoattack"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="autocast precision for robustlit's attacks (the peers always run fp32)")
    parser.add_argument("--contiguous", action="store_true",
                        help="feed robustlit's attacks contiguous (NCHW) inputs instead of channels-last ones")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/robustlit-bench"), help="where to extract CIFAR-10")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_model(args.device)
    x, y = (t.to(args.device) for t in load_points(args.n, args.cache))
    channels_last = not args.contiguous and accepts_channels_last(model, x)
    fast_model = with_precision(model, args.precision, channels_last)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"# {time.strftime('%Y-%m-%d')} {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads,"
          f" n={args.n}, robustlit precision={args.precision}, channels_last={channels_last}")
    print(f"clean accuracy: {accuracy(model, x, y):.3f}")
    fwd_bwd = forward_backward_seconds(fast_model, x, y, args.device)
    print(f"forward+backward on the batch (robustlit's model settings): {fwd_bwd:.3f} s;"
          f" plain fp32: {forward_backward_seconds(model, x, y, args.device):.3f} s")
    print("| attack | robustlit acc | robustlit s | peer | peer acc | peer s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name in args.attacks:
        adversarial, seconds = timed(
            partial(ours, name, model, fast_model, x, y, args.precision, channels_last), args.device
        )
        ours_acc = accuracy(model, adversarial, y)
        try:
            (peer_name, peer_adversarial), peer_seconds = timed(partial(peer, name, model, x, y, args.device),
                                                                args.device)
            peer_acc, ratio = accuracy(model, peer_adversarial, y), peer_seconds / seconds
            peer_cells = f"{peer_name} | {peer_acc:.3f} | {peer_seconds:.1f} | {ratio:.2f}×"
        except Exception as error:  # noqa: BLE001 - a crashing peer is a result worth printing
            peer_cells = f"peer failed: {type(error).__name__}: {str(error).splitlines()[0][:60]} | | |"
        print(f"| {name} | {ours_acc:.3f} | {seconds:.1f} | {peer_cells}")
        if name.startswith("pgd"):
            steps = int(name[3:])
            print(f"|   ↳ PGD overhead | time / ({steps} × fwd+bwd) = {seconds / (steps * fwd_bwd):.3f} | | | | | |")


if __name__ == "__main__":
    main()
