"""robustlit-eval on the real CIFAR-10 test set with the shared adversarially trained SmallCNN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robustlit.reporting import read_report

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_fgsm_trained_smallcnn_matches_its_published_accuracy(shared, cifar10_test_dir, tmp_path):
    """models/README.md: clean 0.652 and PGD-20 (8/255, step 2/255) 0.347 on the full test set."""
    checkpoint = shared("models/smallcnn_fgsmat.torchscript.pt")
    command = [
        BIN / "robustlit-eval", f"model.checkpoint={checkpoint}", "data=imagefolder", f"data.root={cifar10_test_dir}",
        "data.limit_test=500", "evaluation=[adversarial]", "evaluation.adversarial.eps.Linf=[8/255]",
        "evaluation.adversarial.steps=20", "evaluation.adversarial.rel_step_size=0.25", f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = read_report(tmp_path)
    assert report.data.n_test == 500
    clean = report.find("clean", "accuracy")[0].value
    robust = report.find("adversarial", "robust_accuracy", attack="pgd", eps=round(8 / 255, 7))[0].value
    # a 500-image subset has a binomial standard error of about 2 points
    assert 0.60 <= clean <= 0.70
    assert 0.30 <= robust <= 0.40
    assert robust < clean - 0.2
