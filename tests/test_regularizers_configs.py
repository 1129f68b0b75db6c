"""Every regularizer config composes and builds, and early stopping on a robust metric works in a real Trainer."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping

from robustlit import callbacks
from robustlit.optim import SGDW
from robustlit.suites import AdversarialSuite
from tests.regularizer_nets import TinyNet, loader, trainer

CONFIGS = {
    "trades": callbacks.TRADES,
    "mart": callbacks.MART,
    "fast_at": callbacks.FastAdversarialTraining,
    "adversarial_augmentation": callbacks.AdversarialAugmentation,
    "augmix": callbacks.AugMix,
    "cutmix": callbacks.CutMix,
    "manifold_mixup": callbacks.ManifoldMixup,
    "randaugment": callbacks.RandAugment,
    "color_jitter": callbacks.ColorJitter,
    "confidence_penalty": callbacks.ConfidencePenalty,
    "entropy_max": callbacks.EntropyMaximization,
    "focal": callbacks.FocalLoss,
    "bi_tempered": callbacks.BiTemperedLoss,
    "huber": callbacks.HuberLoss,
    "input_gradient": callbacks.InputGradientPenalty,
    "jacobian": callbacks.JacobianPenalty,
    "vat": callbacks.VAT,
    "consistency": callbacks.Consistency,
    "l1": callbacks.L1Penalty,
    "parseval": callbacks.Parseval,
    "dropout": callbacks.Dropout,
    "dropconnect": callbacks.DropConnect,
    "stochastic_depth": callbacks.StochasticDepth,
    "noise_injection": callbacks.NoiseInjection,
    "early_stopping": EarlyStopping,
}


def test_every_regularizer_config_builds_its_callback(compose_config):
    cfg = compose_config("train", [f"regularizer=[{','.join(CONFIGS)}]"])
    assert list(cfg.regularizer) == list(CONFIGS)
    for name, cls in CONFIGS.items():
        assert isinstance(instantiate(cfg.regularizer[name]), cls), name
    trades = instantiate(cfg.regularizer.trades)
    assert trades.eps == pytest.approx(8 / 255) and trades.weight == 6.0


def test_sgdw_optimizer_config(compose_config):
    cfg = compose_config("train", ["optimizer=sgdw"])
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, SGDW)
    assert optimizer.defaults["weight_decay"] == 5e-4 and optimizer.defaults["nesterov"]


def test_manifold_mixup_config_names_layers_of_the_default_model(compose_config):
    from robustlit.module import RobustClassifier

    cfg = compose_config("train", ["regularizer=[manifold_mixup]"])
    model = RobustClassifier(dict(cfg.model), num_classes=10, in_channels=1, mean=(0.5,), std=(0.25,))
    names = dict(model.named_modules())
    assert all(layer == "input" or layer in names for layer in cfg.regularizer.manifold_mixup.layers)


class _ValidatedNet(TinyNet):
    def validation_step(self, batch, batch_idx):
        """Nothing to log: the suite measures the model during validation."""


def test_early_stopping_on_the_suite_robust_accuracy_stops_a_real_run(compose_config):
    cfg = compose_config("train", [
        "regularizer=[early_stopping]", "evaluation=[adversarial]", "evaluation.adversarial.steps=2",
        "evaluation.adversarial.eps.Linf=[8/255]", "evaluation.adversarial.checks=false",
        "+evaluation.adversarial.stages=[validate]", "regularizer.early_stopping.patience=1",
        "regularizer.early_stopping.min_delta=1.0",  # no epoch can improve by 1.0: stop after patience runs out
    ])
    stopper = instantiate(cfg.regularizer.early_stopping)
    suite = instantiate(cfg.evaluation.adversarial)
    assert isinstance(suite, AdversarialSuite)
    fit = trainer([suite, stopper], batches=1, epochs=5, limit_val_batches=1)
    fit.fit(_ValidatedNet(), train_dataloaders=loader(), val_dataloaders=loader(8))
    assert stopper.monitor in fit.callback_metrics  # the exact key the suite logs
    value = float(fit.callback_metrics[stopper.monitor])
    assert 0.0 <= value <= 1.0
    assert fit.current_epoch == 2 and stopper.stopped_epoch == 1  # stopped long before max_epochs=5


@pytest.mark.slow
@pytest.mark.parametrize("regularizers", ["trades", "cutmix,focal", "augmix", "manifold_mixup,dropout"])
def test_robustlit_train_runs_with_regularizers(compose_config, tmp_path, regularizers):
    from robustlit.cli.train import train

    cfg = compose_config("train", ["trainer=debug", f"regularizer=[{regularizers}]", "evaluation=[]",
                                   f"output_dir={tmp_path}"])
    report, path = train(cfg, verbose=False)
    assert path.is_file() and report.find("clean", "accuracy")
