"""Certified training callbacks, the CertifiedSuite, the Hydra apps, and the cross-check against PGD."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlit.attacks import pgd
from robustlit.callbacks import GaussianNoise, IBPTraining, SpectralNorm
from robustlit.callbacks.spectral_norm import layer_operator_norm
from robustlit.certify import (
    ABSTAIN,
    certify_linf,
    lipschitz_bound,
    lipschitz_certify,
    smoothed_certify,
    smoothed_predict,
)
from robustlit.data.digits import load_digit_images
from robustlit.module import RobustClassifier, StepContext
from robustlit.reporting import read_report
from robustlit.suites import CertifiedSuite

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _mlp(hidden: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digit_images(8, 1)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    train, test = order[:1400], order[1400:]
    return (images[train], labels[train]), (images[test], labels[test])


def _fit(network: nn.Module, data, callbacks: list[L.Callback], epochs: int, lr: float = 3e-3) -> RobustClassifier:
    (x, y), _ = data
    module = RobustClassifier(model=network, num_classes=10, in_channels=1, optimizer=partial(torch.optim.Adam, lr=lr))
    loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, loader)
    return module.eval()


@pytest.fixture(scope="module")
def ibp_model(digits):
    return _fit(_mlp(), digits, [IBPTraining(eps=0.11, method="crown-ibp", ramp_epochs=5, kappa_end=0.5)], epochs=10)


@pytest.fixture(scope="module")
def spectral_model(digits):
    return _fit(_mlp(), digits, [SpectralNorm(max_norm=1.0)], epochs=4, lr=1e-2)


@pytest.fixture(scope="module")
def noisy_model(digits):
    return _fit(_mlp(), digits, [GaussianNoise(sigma=0.25, seed=0)], epochs=6)


def test_ibp_training_gives_verified_points_and_pgd_finds_none_within_their_radius(ibp_model, noisy_model, digits):
    _, (x, y) = digits
    x, y = x[:200], y[:200]
    result = certify_linf(ibp_model, x, [0.02, 0.05, 0.1])
    certified = result.certified(y, 0.1)
    assert float(certified.double().mean()) > 0.25  # certified training worked
    # and it was needed: the noise-trained model of the same architecture certifies (almost) nothing
    assert float(certify_linf(noisy_model, x, [0.1]).certified(y, 0.1).double().mean()) < 0.05
    for radius in (0.05, 0.1):
        index = ((result.radius == radius) & (result.prediction == y)).nonzero().squeeze(1)
        if index.numel() == 0:
            continue
        adversarial = pgd(ibp_model, x[index], y[index], eps=radius, steps=50, restarts=3, loss="margin",
                          sample_ids=index)
        assert torch.equal(ibp_model(adversarial).argmax(1), y[index])


def test_spectral_norm_keeps_every_layer_within_max_norm_and_lipschitz_radii_resist_pgd(spectral_model, digits):
    for layer in spectral_model.model:
        if isinstance(layer, nn.Linear):
            sigma, _ = layer_operator_norm(layer, (layer.in_features,), iterations=300)
            assert float(sigma) <= 1.02
    bound = lipschitz_bound(spectral_model, (1, 8, 8))
    assert bound <= 1.02**3
    _, (x, y) = digits
    result = lipschitz_certify(spectral_model, x[:100])
    index = ((result.prediction == y[:100]) & (result.radius > 0)).nonzero().squeeze(1)[:12]
    assert index.numel() > 5
    for i in index.tolist():
        radius = float(result.radius[i]) * 0.999
        adversarial = pgd(spectral_model, x[i : i + 1], y[i : i + 1], eps=radius, norm="L2", steps=40, restarts=2)
        assert int(spectral_model(adversarial).argmax(1)) == int(y[i])


class _SmoothedSoftmax(nn.Module):
    """Log of the average softmax over fixed Gaussian draws: the soft smoothed classifier PGD attacks (EOT)."""

    def __init__(self, model: nn.Module, sigma: float, draws: int = 32) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma
        self.noise = torch.randn(draws, 1, 8, 8, generator=torch.Generator().manual_seed(5))

    def forward(self, x):
        noisy = x[:, None] + self.sigma * self.noise[None]
        probs = self.model(noisy.flatten(0, 1)).softmax(1).view(x.shape[0], len(self.noise), -1).mean(1)
        return probs.clamp_min(1e-12).log()


def test_smoothing_certificates_resist_a_pgd_attack_on_the_smoothed_classifier(noisy_model, digits):
    _, (x, y) = digits
    x, y = x[:40], y[:40]
    result = smoothed_certify(noisy_model, x, sigma=0.25, n0=50, n=1000, alpha=0.001, seed=0)
    index = ((result.prediction == y) & (result.radius > 0.1)).nonzero().squeeze(1)[:6]
    assert index.numel() >= 4
    soft = _SmoothedSoftmax(noisy_model, 0.25)
    for i in index.tolist():
        radius = float(result.radius[i])
        adversarial = pgd(soft, x[i : i + 1], y[i : i + 1], eps=radius, norm="L2", steps=15)
        assert float((adversarial - x[i : i + 1]).norm()) <= radius + 1e-5
        prediction = smoothed_predict(noisy_model, adversarial, sigma=0.25, n=500, alpha=0.001, seed=1)
        assert int(prediction) in (int(y[i]), ABSTAIN)


def test_gaussian_noise_draws_sigma_noise_keyed_by_step_and_row():
    callback = GaussianNoise(sigma=0.5, seed=3)
    ctx = StepContext(module=nn.Identity(), batch_idx=0, inputs=torch.full((64, 1, 8, 8), 0.5),
                      targets=torch.zeros(64, dtype=torch.long))
    noisy, targets = callback.transform(ctx)
    noise = noisy - 0.5
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 0.5) < 0.03
    assert torch.equal(callback.transform(ctx)[0], noisy) and torch.equal(targets, ctx.targets)
    callback._step = 1
    assert not torch.equal(callback.transform(ctx)[0], noisy)
    with pytest.raises(MisconfigurationException, match="GaussianNoise needs sigma > 0"):
        GaussianNoise(sigma=0)


def test_ibp_schedule_ramps_eps_kappa_and_beta():
    callback = IBPTraining(eps=0.2, method="crown-ibp", warmup_epochs=1, ramp_epochs=4, kappa_start=1.0,
                           kappa_end=0.0, beta_final=0.5, ramp_mid=0.25, ramp_power=4.0)
    callback._steps_per_epoch = 10
    assert callback.schedule(5) == (0.0, 1.0, 1.0)
    eps, kappa, beta = callback.schedule(30)  # halfway through the ramp (past the polynomial part)
    assert 0 < eps < 0.1 and kappa == pytest.approx(0.5) and beta == pytest.approx(1 - 0.5 * eps / 0.2)
    assert callback.schedule(60) == (0.2, 0.0, 0.5)
    assert IBPTraining(eps=0.2, method="ibp", ramp_epochs=1).schedule(100)[2] == 0.0
    with pytest.raises(MisconfigurationException, match="method='lp'; choose one of ibp, crown-ibp"):
        IBPTraining(method="lp")
    with pytest.raises(MisconfigurationException, match="0 <= kappa_end <= 1"):
        IBPTraining(kappa_end=2.0)


def test_spectral_norm_state_round_trips():
    callback = SpectralNorm(max_norm=0.5)
    callback._shapes = {"fc": (4,)}
    callback._vectors = {"fc": torch.ones(1, 4)}
    restored = SpectralNorm(max_norm=0.5)
    restored.load_state_dict(callback.state_dict())
    assert restored._shapes == {"fc": (4,)} and torch.equal(restored._vectors["fc"], torch.ones(1, 4))
    with pytest.raises(MisconfigurationException, match="max_norm > 0"):
        SpectralNorm(max_norm=0)


def test_certified_suite_rows_do_not_depend_on_batch_size(noisy_model, digits, tmp_path):
    _, (x, y) = digits
    dataset = TensorDataset(x[:24], y[:24])
    suite = CertifiedSuite(methods=["smoothing", "ibp", "crown-ibp", "lipschitz"], sigma=0.25, n0=20, n=200,
                           eps=["1/255", "4/255"], radii=[0.0, 0.25, 0.5])
    first = suite.evaluate(noisy_model, DataLoader(dataset, batch_size=24))
    second = suite.evaluate(noisy_model, DataLoader(dataset, batch_size=7))
    assert [(m.name, m.context, m.value) for m in first] == [(m.name, m.context, m.value) for m in second]
    rows = {(m.name, m.context.get("method"), m.context.get("radius")): m for m in first}
    smoothing = rows[("certified_accuracy", "smoothing", 0.25)]
    assert smoothing.context == {"method": "smoothing", "norm": "L2", "guarantee": "probabilistic(0.001)",
                                 "radius": 0.25}
    assert rows[("certified_accuracy", "ibp", round(4 / 255, 7))].context["guarantee"] == "deterministic"
    assert rows[("certified_accuracy", "lipschitz", 0.5)].context["norm"] == "L2"
    assert {m.context["method"] for m in first if m.name == "abstain_rate"} == {"smoothing", "ibp", "crown-ibp",
                                                                                 "lipschitz"}
    assert {("method", "norm", "guarantee")} == {tuple(m.context) for m in first if m.name == "median_radius"}
    for method in ("smoothing", "lipschitz"):
        curve = [rows[("certified_accuracy", method, r)].value for r in (0.0, 0.25, 0.5)]
        assert curve == sorted(curve, reverse=True)
    clean = float((noisy_model(x[:24]).argmax(1) == y[:24]).double().mean())
    assert rows[("certified_accuracy", "ibp", round(1 / 255, 7))].value <= clean
    artifacts = suite.write_artifacts(tmp_path)
    assert [a.name for a in artifacts] == ["certified_radii.csv", "certified_accuracy.png"]
    lines = (tmp_path / "certified_radii.csv").read_text().splitlines()
    assert lines[0] == "sample,label,method,norm,guarantee,prediction,radius" and len(lines) == 1 + 4 * 24
    with pytest.raises(MisconfigurationException, match="choose from smoothing, ibp, crown-ibp, crown, lipschitz"):
        CertifiedSuite(methods=["randomized"])


FAST = ["trainer=debug", "data.image_size=16", "model.width=4", "evaluation=[certified]",
        "evaluation.certified.limit=8", "evaluation.certified.n0=10", "evaluation.certified.n=50"]


def test_ibp_recipe_trains_and_eval_writes_the_certificate_table(compose_config, tmp_path):
    from robustlit.cli.eval import evaluate
    from robustlit.cli.train import train

    report, path = train(compose_config("train", [*FAST, "recipe=ibp_certified", f"output_dir={tmp_path / 't'}"]),
                         verbose=False)
    data = json.loads(path.read_text())
    assert data["run"]["name"] == "ibp_certified"
    assert data["run"]["config"]["regularizer"]["ibp"]["method"] == "crown-ibp"
    metrics = read_report(path).find("certified", "certified_accuracy", method="ibp")
    assert [m.context["radius"] for m in metrics] == [round(e / 255, 7) for e in (1, 2, 8)]
    logged = (tmp_path / "t" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/ibp/eps" in logged and "train/reg/ibp" in logged
    checkpoint = Path(data["model"]["checkpoint"])
    evaluated, _ = evaluate(compose_config("eval", [*FAST[:2], *FAST[3:], f"model.checkpoint={checkpoint}",
                                                    f"output_dir={tmp_path / 'e'}"]), verbose=False)
    rows = evaluated.find("certified", "certified_accuracy")
    assert {m.context["method"] for m in rows} == {"smoothing", "ibp", "lipschitz"}
    for metric in report.find("certified", "certified_accuracy"):
        assert evaluated.find("certified", "certified_accuracy", **metric.context)[0].value == metric.value
    assert {a.name for a in evaluated.artifacts} >= {"certified_radii.csv", "certified_accuracy.png"}
    assert (tmp_path / "e" / "certified_radii.csv").is_file()


def test_regularizer_and_recipe_configs_build_the_callbacks(compose_config):
    from robustlit.cli.build import build_section, build_suites

    cfg = compose_config("train", ["recipe=gaussian_smoothing", "evaluation=[certified]"])
    assert cfg.recipe_name == "gaussian_smoothing" and cfg.recipe_description
    (noise,) = build_section(cfg, "regularizer")
    assert isinstance(noise, GaussianNoise) and noise.sigma == cfg.evaluation.certified.sigma == 0.25
    suite = next(s for s in build_suites(cfg) if isinstance(s, CertifiedSuite))
    assert suite.methods == ["smoothing", "ibp", "lipschitz"] and suite.n == 1000 and suite.limit == 100
    cfg = compose_config("train", ["regularizer=[ibp,spectral_norm]", "regularizer.ibp.eps=2/255"])
    ibp, spectral = build_section(cfg, "regularizer")
    assert isinstance(ibp, IBPTraining) and ibp.eps == pytest.approx(2 / 255) and ibp.method == "crown-ibp"
    assert isinstance(spectral, SpectralNorm) and spectral.max_norm == 1.0
    assert compose_config("train", ["recipe=ibp_certified"]).recipe_description
