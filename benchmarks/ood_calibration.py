"""ECE before/after temperature scaling and OOD AUROC of every detector for the shared CIFAR-10 SmallCNN.

Loads ``../shared/models/smallcnn_std.state_dict.pt`` into robustlit's ``SmallCNN`` (the eager architecture of the
TorchScript file, so forward hooks see its penultimate features), the CIFAR-10 test ImageFolder and a seeded
class-balanced subset of the training ImageFolder, then runs the library's own suites:

* ``CalibrationSuite``: temperature fitted on a seeded 20% of the test set, every metric on the other 80%,
  in domain and under the chosen corruptions at every severity (with the in-domain temperature).
* ``OODSuite``: detectors fitted on the training subset; the ID test images against the download-free sets
  (digits upscaled to 32x32 RGB, Gaussian, uniform and blob noise).

Usage:
    .venv/bin/python benchmarks/ood_calibration.py --cifar /tmp/cifar --fit 5000 --ood-test 2000
    .venv/bin/python benchmarks/ood_calibration.py --corruptions gaussian_noise fog --shift-limit 2000
    # pack the images once (uint8), then run anywhere, e.g. on a GPU machine without the JPEG folders:
    .venv/bin/python benchmarks/ood_calibration.py --pack build/oodcal/cifar.pt --fit 5000
    python3 benchmarks/ood_calibration.py --packed build/oodcal/cifar.pt --weights build/oodcal/w.pt --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustlit.data.folder import ImageFiles, find_classes, scan_images
from robustlit.models import SmallCNN
from robustlit.suites import CalibrationSuite, OODSuite

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_CORRUPTIONS = ["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"]


def load_folder(folder: Path, per_class: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """Images and labels of an ImageFolder tree; ``per_class`` draws a seeded subset of each class."""
    classes = find_classes(folder, str(folder))
    samples = scan_images(folder, classes, str(folder))
    if per_class is not None:
        rng = np.random.RandomState(seed)
        labels = np.array([label for _, label in samples])
        chosen = sorted(i for c in range(len(classes))
                        for i in rng.permutation(np.flatnonzero(labels == c))[:per_class])
        samples = [samples[i] for i in chosen]
    dataset = ImageFiles(samples, channels=3, image_size=32, resize=False)
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return x, torch.tensor(dataset.targets)


def batches(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    """A list of ``(x, y)`` batches in order."""
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def main() -> None:
    """Run the benchmark and print markdown tables; write every row to ``--out`` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar"), help="folder with train/ and test/")
    parser.add_argument("--weights", type=Path, default=SHARED / "models" / "smallcnn_std.state_dict.pt")
    parser.add_argument("--fit", type=int, default=5000, help="training images to fit the OOD detectors on")
    parser.add_argument("--ood-test", type=int, default=2000, help="ID test images scored by the OOD suite")
    parser.add_argument("--ood-size", type=int, default=1000, help="images per download-free OOD set")
    parser.add_argument("--corruptions", nargs="*", default=DEFAULT_CORRUPTIONS)
    parser.add_argument("--shift-limit", type=int, default=2500, help="test images for calibration under shift")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-limit", type=int, help="use only the first N test images (a quick check)")
    parser.add_argument("--pack", type=Path, help="only write the loaded images (uint8) to this file and stop")
    parser.add_argument("--packed", type=Path, help="read the images from a file written by --pack")
    parser.add_argument("--out", type=Path, default=Path("ood_calibration.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    model = SmallCNN(num_classes=10)
    model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    model = model.to(device).eval()
    began = time.perf_counter()
    if args.packed:
        packed = torch.load(args.packed, weights_only=True)
        x_test, y_test, x_fit, y_fit = (packed[k] for k in ("x_test", "y_test", "x_fit", "y_fit"))
        x_test, x_fit = x_test.float() / 255, x_fit.float() / 255
    else:
        x_test, y_test = load_folder(args.cifar / "test", None, 0)
        x_fit, y_fit = load_folder(args.cifar / "train", args.fit // 10, seed=0)
    print(f"loaded {len(y_test)} test and {len(y_fit)} training images in {time.perf_counter() - began:.1f}s "
          f"on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    if args.pack:
        args.pack.parent.mkdir(parents=True, exist_ok=True)
        as_bytes = {"x_test": (x_test * 255).round().to(torch.uint8), "y_test": y_test,
                    "x_fit": (x_fit * 255).round().to(torch.uint8), "y_fit": y_fit}
        torch.save(as_bytes, args.pack)
        print(f"packed into {args.pack}")
        return
    x_test, y_test, x_fit, y_fit = (t.to(device) for t in (x_test, y_test, x_fit, y_fit))
    x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    rows = []

    began = time.perf_counter()
    in_domain = CalibrationSuite(n_bins=15, target_risks=[0.01, 0.05])
    rows += [m.__dict__ for m in in_domain.evaluate(model, batches(x_test, y_test, args.batch_size))]
    seconds_in = time.perf_counter() - began
    began = time.perf_counter()
    shift = CalibrationSuite(n_bins=15, corruptions=args.corruptions, target_risks=[])
    shifted = shift.evaluate(model, batches(x_test[: args.shift_limit], y_test[: args.shift_limit], args.batch_size))
    rows += [{**m.__dict__, "suite": "calibration_shift"} for m in shifted]
    seconds_shift = time.perf_counter() - began

    began = time.perf_counter()
    ood = OODSuite(fit_limit=args.fit, ood_size=args.ood_size, batch_size=args.batch_size)
    ood_rows = ood.evaluate(model, batches(x_test[: args.ood_test], y_test[: args.ood_test], args.batch_size),
                            fit_loader=batches(x_fit, y_fit, args.batch_size))
    rows += [m.__dict__ for m in ood_rows]
    seconds_ood = time.perf_counter() - began

    temperature = in_domain.temperature
    print(f"\n## Calibration ({len(y_test)} test images; T fitted on 20%, metrics on the other 80%; "
          f"{seconds_in:.1f}s) T = {temperature:.3f}\n")
    print("| metric | T = 1 | T fitted |\n|---|---|---|")
    for name in ("ece", "adaptive_ece", "classwise_ece", "mce", "nll", "brier"):
        values = {m.context["temperature"]: m.value for m in in_domain.results
                  if m.name == name and m.context["split"] == "in_domain"}
        before, after = values[1.0], values[round(temperature, 4)]
        print(f"| {name} | {before:.4f} | {after:.4f} |")
    if args.corruptions:
        print(f"\n## ECE under shift (first {args.shift_limit} test images, 80% evaluated; {seconds_shift:.1f}s)\n")
        print("| corruption | " + " | ".join(f"s{s} T=1 / T fitted" for s in range(1, 6)) + " |")
        print("|---|" + "---|" * 5)
        shift_t = round(shift.temperature, 4)
        for corruption in args.corruptions:
            cells = []
            for severity in range(1, 6):
                values = {m.context["temperature"]: m.value for m in shift.results
                          if m.name == "ece" and m.context["split"] == f"{corruption}/{severity}"}
                cells.append(f"{values[1.0]:.3f} / {values[shift_t]:.3f}")
            print(f"| {corruption} | " + " | ".join(cells) + " |")
    print(f"\n## OOD AUROC (fit on {min(args.fit, len(y_fit))} training images, {args.ood_test} ID test images, "
          f"{args.ood_size} per OOD set; {seconds_ood:.1f}s)\n")
    print("| detector | " + " | ".join([*ood.ood_names, "mean"]) + " |")
    print("|---|" + "---|" * (len(ood.ood_names) + 1))
    for detector in ood.detector_names:
        values = {m.context["ood_set"]: m.value for m in ood.results
                  if m.name == "auroc" and m.context["detector"] == detector}
        print(f"| {detector} | " + " | ".join(f"{values[s]:.3f}" for s in [*ood.ood_names, "mean"]) + " |")
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"\nrows: {args.out}")


if __name__ == "__main__":
    main()
