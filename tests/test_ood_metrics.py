"""OOD metrics against sklearn.metrics on random fixtures (with ties) and hand-computed FPR95 fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from robustlit.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics, roc_curve


def _fixture(seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randn(300, generator=generator) + 1.0
    oods = torch.randn(200, generator=generator)
    if ties:  # coarse rounding makes many ties within and across the two sets
        ids, oods = (ids * 4).round() / 4, (oods * 4).round() / 4
    return ids, oods


def _sklearn(ids: torch.Tensor, oods: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.ones(len(ids)), np.zeros(len(oods))])
    return labels, np.concatenate([ids.numpy(), oods.numpy()]).astype(np.float64)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_aupr_match_sklearn(seed, ties):
    ids, oods = _fixture(seed, ties)
    labels, scores = _sklearn(ids, oods)
    assert auroc(ids, oods) == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert aupr_in(ids, oods) == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert aupr_out(ids, oods) == pytest.approx(average_precision_score(1 - labels, -scores), abs=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_curve_and_fpr95_match_sklearn_roc_curve(ties):
    ids, oods = _fixture(3, ties)
    labels, scores = _sklearn(ids, oods)
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    ours = roc_curve(ids, oods)
    np.testing.assert_allclose(ours.fpr.numpy(), fpr, atol=1e-12)
    np.testing.assert_allclose(ours.tpr.numpy(), tpr, atol=1e-12)
    expected = fpr[np.searchsorted(tpr, 0.95, side="left")]  # first operating point with TPR >= 95%
    assert fpr_at_tpr(ids, oods) == pytest.approx(expected, abs=1e-12)


def test_fpr95_hand_fixture():
    # 20 ID scores 1..20, OOD scores 0.5, 1.5, 2.5 and 19.5. Keeping 95% of ID (19 of 20) needs
    # threshold 2, which accepts the OOD scores 2.5 and 19.5: FPR = 2/4.
    ids = torch.arange(1, 21, dtype=torch.float64)
    oods = torch.tensor([0.5, 1.5, 2.5, 19.5])
    assert fpr_at_tpr(ids, oods) == 0.5
    # OpenOOD's convention (OOD positive): catching 3 of 4 OOD (75%) rejects scores <= 2.5, i.e. ID 1 and 2.
    assert fpr_at_tpr(ids, oods, tpr=0.75, positive="ood") == pytest.approx(2 / 20)
    # A tie at the threshold is never split: with ID = OOD = all 1.0 every input is accepted.
    assert fpr_at_tpr(torch.ones(10), torch.ones(5)) == 1.0


def test_perfect_and_reversed_detectors():
    ids, oods = torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])
    assert ood_metrics(ids, oods) == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    reversed_ = ood_metrics(oods, ids)
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="ood_scores is empty"):
        auroc([1.0], [])
    with pytest.raises(ValueError, match="NaN or infinite"):
        aupr_in([float("nan")], [1.0])
    with pytest.raises(ValueError, match=r"positive='x'"):
        fpr_at_tpr([1.0], [0.0], positive="x")
    with pytest.raises(ValueError, match=r"tpr must be in \(0, 1\]"):
        fpr_at_tpr([1.0], [0.0], tpr=0)
