"""AutoAttack composition, resumable state, ε sweeps, mixed precision and the adversarial suite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlit.attacks import ATTACKS, apgd, pgd
from robustlit.attacks.autoattack import VERSIONS, EOTModel, autoattack, autoattack_plan
from robustlit.attacks.precision import AutocastModel, accepts_channels_last, with_precision
from robustlit.attacks.sweep import robustness_curve
from robustlit.reporting import DataInfo, Metric, ModelInfo, Report, RunInfo
from robustlit.reporting.plots import plot_robustness_curves, robustness_curves
from robustlit.suites import AdversarialSuite

FAST_PLAN = [("fgsm", {}), ("pgd", {"steps": 5})]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(40, 3, 8, 8, generator=generator)
    with torch.no_grad():
        y = _model()(x).argmax(1)
    y[:5] = (y[:5] + 1) % 10  # a few points misclassified from the start
    return x, y


def test_reference_plans():
    assert [n for n, _ in autoattack_plan("standard", "Linf")] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    standard = dict(autoattack_plan("standard", "L2"))
    assert standard["apgd-ce"] == {"steps": 100, "restarts": 1}
    assert standard["apgd-t"]["n_target_classes"] == 9 and standard["fab-t"]["n_target_classes"] == 9
    assert standard["square"] == {"queries": 5000, "p_init": 0.8, "restarts": 1}
    assert [n for n, _ in autoattack_plan("standard", "L1")] == ["apgd-ce", "apgd-t", "fab-t"]
    l1 = dict(autoattack_plan("standard", "L1"))
    assert l1["apgd-ce"] == {"steps": 100, "restarts": 5, "large_reps": True}
    assert l1["apgd-t"]["n_target_classes"] == 5 and l1["apgd-t"]["large_reps"]
    plus = autoattack_plan("plus", "Linf")
    assert [n for n, _ in plus] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert dict(plus)["apgd-ce"]["restarts"] == dict(plus)["fab"]["restarts"] == 5
    assert [n for n, _ in autoattack_plan("rand", "Linf")] == ["apgd-ce", "apgd-dlr"]
    for version in VERSIONS.values():
        for plan in version.values():
            assert all(name in ATTACKS for name, _ in plan)
    with pytest.raises(ValueError, match="does not support norm='L1'"):
        autoattack_plan("plus", "L1")


def test_each_attack_only_sees_points_still_robust(batch, monkeypatch):
    x, y = batch
    seen: list[int] = []

    def spy(model, x, y, **kwargs):
        seen.append(x.shape[0])
        return pgd(model, x, y, **kwargs)

    monkeypatch.setitem(ATTACKS, "spy", spy)
    result = autoattack(_model(), x, y, eps=0.05, plan=[("pgd", {"steps": 5}), ("spy", {"steps": 5})])
    assert seen == [int(result.robust_after["pgd"].sum())]
    assert bool((result.robust <= result.robust_after["pgd"]).all())
    assert bool((result.robust_after["pgd"] <= result.clean).all())
    assert int(result.clean.sum()) == 35
    delta = (result.adversarial - x).abs().flatten(1).amax(1)
    assert float(delta.max()) <= 0.05 + 1e-6
    fooled = result.clean & ~result.robust
    with torch.no_grad():
        assert bool((_model()(result.adversarial[fooled]).argmax(1) != y[fooled]).all())


def test_results_do_not_depend_on_batching_or_batch_size(batch):
    x, y = batch
    ids = torch.arange(100, 140)
    whole = autoattack(_model(), x, y, eps=0.05, plan=FAST_PLAN, sample_ids=ids)
    chunked = autoattack(_model(), x, y, eps=0.05, plan=FAST_PLAN, sample_ids=ids, batch_size=7)
    halves = [autoattack(_model(), x[s], y[s], eps=0.05, plan=FAST_PLAN, sample_ids=ids[s])
              for s in (slice(0, 17), slice(17, 40))]
    assert torch.equal(whole.robust, chunked.robust)
    assert torch.equal(whole.robust, torch.cat([h.robust for h in halves]))


def test_state_file_resumes_after_the_last_finished_attack(batch, tmp_path, monkeypatch):
    x, y = batch
    state = tmp_path / "aa.pt"
    first = autoattack(_model(), x, y, eps=0.05, plan=FAST_PLAN[:1], state_path=state)
    calls = []
    original = ATTACKS["fgsm"]

    def spy(model, x, y, **kwargs):
        calls.append(x.shape[0])
        return original(model, x, y, **kwargs)

    monkeypatch.setitem(ATTACKS, "fgsm", spy)
    resumed = autoattack(_model(), x, y, eps=0.05, plan=FAST_PLAN[:1], state_path=state)
    assert calls == []  # nothing left to do: the finished attack was not run again
    assert torch.equal(resumed.robust, first.robust)
    other = autoattack(_model(), x, y, eps=0.06, plan=FAST_PLAN[:1], state_path=state)
    assert calls == [int(other.clean.sum())]  # another ε is another job: the state is not reused


def test_sweep_is_monotone_and_matches_single_runs(batch):
    x, y = batch
    curve = robustness_curve(_model(), x, y, eps=[0.08, 0.0, 0.02], attack="pgd", steps=5, rel_step_size=0.25)
    assert curve.eps == [0.0, 0.02, 0.08]
    accuracy = curve.accuracy()
    assert accuracy[0] == pytest.approx(35 / 40) and accuracy[0] >= accuracy[1] >= accuracy[2]
    single = pgd(_model(), x, y, eps=0.02, alpha=0.005, steps=5, sample_ids=torch.arange(40))
    with torch.no_grad():
        robust = (_model()(single).argmax(1) == y) & curve.clean
    assert torch.equal(curve.raw[0.02], robust)
    with pytest.raises(ValueError, match="attack='pgd2' is unknown"):
        robustness_curve(_model(), x, y, eps=[0.1], attack="pgd2")


def test_bf16_autocast_changes_robust_accuracy_little(batch):
    """The untrained model's logit gaps are small enough for bf16 rounding to flip predictions.

    Stopping at points that only bf16 calls misclassified left this at 0.875 against fp32's 0.775.
    """
    x, y = batch
    model = _model()
    fp32 = robustness_curve(model, x, y, eps=[0.03], attack="pgd", steps=10)
    bf16 = robustness_curve(model, x, y, eps=[0.03], attack="pgd", steps=10, precision="bf16")
    assert abs(fp32.accuracy()[0] - bf16.accuracy()[0]) <= 1 / 40
    assert with_precision(model, "fp32") is model
    with pytest.raises(ValueError, match="choose one of fp32, bf16, fp16"):
        AutocastModel(model, "int8")


def _near_tie() -> nn.Module:
    """Logits x and (1 + 2⁻¹²)·x: fp32 ranks class 1 first, bf16 (8 mantissa bits) sees a tie and picks 0."""
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [1.0 + 2**-12]]))
    return model.eval()


def test_reduced_precision_only_drives_the_search_and_the_model_decides(tmp_path):
    model, x, y = _near_tie(), torch.full((4, 1), 0.5), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        assert (AutocastModel(model, "bf16")(x).argmax(1) == 0).all()  # bf16 alone would call every point wrong
    result = autoattack(model, x, y, eps=0.01, plan=[("fgsm", {})], precision="bf16")
    assert result.clean.all() and result.robust.all()  # no logit gap ever closes inside the ball
    curve = robustness_curve(model, x, y, eps=[0.01], attack="pgd", steps=3, precision="bf16")
    assert curve.clean.all() and curve.robust[0.01].all()
    # a saved state belongs to one precision: a bf16 run does not resume an fp32 one
    state = tmp_path / "aa.pt"
    autoattack(model, x, y, eps=0.01, plan=[("fgsm", {})], state_path=state)
    fp32_key = torch.load(state, weights_only=True)["key"]
    autoattack(model, x, y, eps=0.01, plan=[("fgsm", {})], state_path=state, precision="bf16")
    assert torch.load(state, weights_only=True)["key"] != fp32_key


def test_apgd_attacks_points_that_only_bf16_gets_wrong():
    model, x, y = _near_tie(), torch.full((4, 1), 0.5), torch.ones(4, dtype=torch.long)
    adversarial = apgd(AutocastModel(model, "bf16"), x, y, eps=0.01, steps=3)
    # correct in fp32, so attacked (moved to its best iterate) rather than returned as misclassified
    assert not torch.equal(adversarial, x)
    assert (adversarial - x).abs().max() <= 0.01 + 1e-6


class _ViewFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1)


def test_channels_last_queries_only_where_the_model_accepts_them(batch):
    x, y = batch
    viewing = nn.Sequential(_ViewFlatten(), nn.Linear(192, 10)).eval()
    assert accepts_channels_last(_model(), x) and not accepts_channels_last(viewing, x)
    assert not accepts_channels_last(_model(), x.flatten(1))
    curve = robustness_curve(viewing, x, y, eps=[0.05], attack="fgsm")  # the default falls back to NCHW
    assert curve.robust[0.05].sum() <= curve.clean.sum()
    with pytest.raises(RuntimeError, match="view"):
        robustness_curve(viewing, x, y, eps=[0.05], attack="fgsm", channels_last=True)
    layouts = [robustness_curve(_model(), x, y, eps=[0.05], attack="pgd", steps=5, channels_last=flag)
               for flag in (True, False)]
    assert torch.equal(layouts[0].robust[0.05], layouts[1].robust[0.05])


def test_eot_averages_a_randomized_model():
    torch.manual_seed(0)
    noisy = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2))
    noisy.train()
    x = torch.ones(1, 4)
    averaged = EOTModel(noisy, n=2000)(x)
    expected = noisy[1](x)  # dropout's expectation is the identity
    assert torch.allclose(averaged, expected, atol=0.1)
    single_passes = torch.stack([noisy(x) for _ in range(20)])
    assert float(single_passes.std(dim=0).max()) > 0.05  # while single passes are noisy


def test_suite_reports_curves_worst_case_and_autoattack_components(batch):
    x, y = batch
    suite = AdversarialSuite(attacks=["fgsm", "pgd"], eps={"Linf": ["2/255", "8/255"], "L2": [0.25]}, steps=5)
    loader = [(x[:25], y[:25]), (x[25:], y[25:])]
    metrics = suite.evaluate(_model(), loader)
    rows = {(m.context["attack"], m.context["norm"], m.context["eps"]): m.value for m in metrics}
    assert set(rows) == {(a, n, e) for a in ("fgsm", "pgd", "worst_case")
                         for n, e in (("Linf", round(2 / 255, 7)), ("Linf", round(8 / 255, 7)), ("L2", 0.25))}
    for norm_eps in (("Linf", round(8 / 255, 7)), ("L2", 0.25)):
        assert rows[("worst_case", *norm_eps)] <= min(rows[("fgsm", *norm_eps)], rows[("pgd", *norm_eps)])
    assert rows[("pgd", "Linf", round(8 / 255, 7))] <= rows[("pgd", "Linf", round(2 / 255, 7))]
    assert suite.warnings == []


def test_suite_with_autoattack_adds_component_rows(batch, monkeypatch, capsys):
    x, y = batch
    suite = AdversarialSuite(attacks=["autoattack"], eps={"Linf": ["8/255"]}, checks=False)
    monkeypatch.setitem(VERSIONS["standard"], "Linf", [("fgsm", {}), ("pgd", {"steps": 3})])
    metrics = suite.evaluate(_model(), [(x, y)])
    final = [m for m in metrics if m.name == "robust_accuracy"]
    after = {m.context["component"]: m.value for m in metrics if m.name == "robust_accuracy_after"}
    assert list(after) == ["fgsm", "pgd"] and after["fgsm"] >= after["pgd"] == final[0].value
    bars = capsys.readouterr().err
    assert "fgsm (Linf, eps=0.03137)" in bars and "pgd (Linf, eps=0.03137)" in bars  # one progress bar each
    AdversarialSuite(attacks=["autoattack"], eps={"Linf": ["8/255"]}, checks=False, progress=False).evaluate(
        _model(), [(x, y)]
    )
    assert "fgsm (Linf" not in capsys.readouterr().err


def test_curves_plot_to_png(tmp_path):
    report = Report(
        RunInfo("r", "robust", "evaluate", 0, "t0", "t1", {}, None, "0"), ModelInfo("m", 1), DataInfo("d", 10, "f"),
        [Metric("clean", "accuracy", 0.9)] + [
            Metric("adversarial", "robust_accuracy", acc, {"attack": "pgd", "norm": "Linf", "eps": e / 255})
            for e, acc in ((2, 0.7), (8, 0.4), (4, 0.6))
        ],
    )
    assert robustness_curves(report)["Linf"]["pgd"] == [(2 / 255, 0.7), (4 / 255, 0.6), (8 / 255, 0.4)]
    path = plot_robustness_curves(report, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    report.metrics = report.metrics[:2]
    assert plot_robustness_curves(report, tmp_path / "none.png") is None
