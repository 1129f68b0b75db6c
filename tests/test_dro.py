"""DRO and invariance objectives against their formulas; the group-annotated data and the groups suite."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from scipy.optimize import minimize
from torch import nn
from torch.utils.data import DataLoader

from robustlit.callbacks.dro import ChiSquareDRO, CVaRDRO, GroupDRO
from robustlit.callbacks.invariance import IRM, VREx
from robustlit.data import ColoredDigitsDataModule, GroupImages
from robustlit.losses.dro import (
    chi_square_weights,
    cvar_weights,
    environment_risks,
    group_dro_update,
    group_mean_losses,
    irm_objective,
    irm_penalty,
    vrex_objective,
    vrex_penalty,
)
from robustlit.module import RobustModule
from robustlit.suites import GroupSuite


class Net(RobustModule, L.LightningModule):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, classes))

    def forward(self, x):
        return self.net(x)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _attach(model: Net, callback) -> None:
    callback.setup(None, model, "fit")


def _batch(groups: list[int]):
    generator = torch.Generator().manual_seed(1)
    n = len(groups)
    x = torch.rand(n, 3, 2, 2, generator=generator)
    return x, torch.randint(0, 3, (n,), generator=generator), torch.tensor(groups)


def test_group_dro_update_follows_its_formula():
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])
    losses = torch.tensor([0.5, 2.0, 1.0, 0.0])
    adjustment = torch.tensor([0.1, 0.0, 0.2, 0.3])
    expected = q * torch.exp(0.7 * (losses + adjustment))
    torch.testing.assert_close(group_dro_update(q, losses, 0.7, adjustment), expected / expected.sum())


def test_group_dro_term_gives_the_weighted_group_loss_and_updates_q_once_per_step():
    model, dro = Net(), GroupDRO(num_groups=3, eta=0.5)
    _attach(model, dro)
    x, y, g = _batch([0, 0, 1, 1, 1, 2])
    loss = model.robust_step([x, y, g], 0)["loss"]
    per_sample = F.cross_entropy(model(x), y, reduction="none")
    means = torch.stack([per_sample[g == k].mean() for k in range(3)])
    q = torch.full((3,), 1 / 3) * torch.exp(0.5 * means.detach())
    q = q / q.sum()
    torch.testing.assert_close(dro.q, q)
    torch.testing.assert_close(loss, (q * means).sum())
    with model.replay_step():  # a SAM re-run of the step keeps q
        model.robust_step([x, y, g], 0)
    torch.testing.assert_close(dro.q, q)


def test_group_dro_with_zero_eta_is_erm_on_a_balanced_batch():
    x, y, g = _batch([0, 1, 2, 0, 1, 2])
    erm, dro_model, dro = Net(), Net(), GroupDRO(num_groups=3, eta=0.0)
    _attach(dro_model, dro)
    erm_loss = erm.robust_step([x, y, g], 0)["loss"]
    dro_loss = dro_model.robust_step([x, y, g], 0)["loss"]
    torch.testing.assert_close(dro_loss, erm_loss)
    erm_loss.backward()
    dro_loss.backward()
    for a, b in zip(erm.parameters(), dro_model.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(dro.q, torch.full((3,), 1 / 3))


def test_an_empty_group_gives_no_nan():
    model, dro = Net(), GroupDRO(num_groups=4, eta=0.3)
    _attach(model, dro)
    x, y, g = _batch([0, 0, 1, 3])
    loss = model.robust_step([x, y, g], 0)["loss"]
    assert torch.isfinite(loss) and torch.isfinite(dro.q).all()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    means, counts = group_mean_losses(torch.tensor([1.0, 2.0]), torch.tensor([0, 0]), 3)
    assert means.tolist() == [1.5, 0.0, 0.0] and counts.tolist() == [2.0, 0.0, 0.0]


def test_group_dro_state_round_trips():
    dro = GroupDRO(num_groups=2)
    dro.q = torch.tensor([0.3, 0.7])
    other = GroupDRO()
    other.load_state_dict(dro.state_dict())
    torch.testing.assert_close(other.q, dro.q)


def test_irm_penalty_matches_its_analytic_form():
    generator = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(7, 4, generator=generator), torch.randint(0, 4, (7,), generator=generator)
    gradient = ((logits.softmax(1) * logits).sum(1) - logits.gather(1, targets[:, None]).squeeze(1)).mean()
    torch.testing.assert_close(irm_penalty(logits, targets), gradient**2)
    logits.requires_grad_(True)
    irm_penalty(logits, targets).backward()  # differentiable in the logits
    assert logits.grad.abs().sum() > 0


def test_irm_and_vrex_terms_use_groups_as_environments():
    model = Net()
    irm, vrex = IRM(penalty_weight=4.0, anneal_steps=0), VREx(penalty_weight=3.0, anneal_steps=0)
    _attach(model, irm)
    x, y, g = _batch([0, 0, 1, 1, 1, 1])
    logits = model(x)
    risks = torch.stack([F.cross_entropy(logits[g == e], y[g == e]) for e in (0, 1)])
    penalties = torch.stack([irm_penalty(logits[g == e], y[g == e]) for e in (0, 1)])
    erm = F.cross_entropy(logits, y)
    torch.testing.assert_close(model.robust_step([x, y, g], 0)["loss"], erm + 4.0 * penalties.mean())
    model.unregister("irm")
    _attach(model, vrex)
    torch.testing.assert_close(model.robust_step([x, y, g], 0)["loss"], erm + 3.0 * risks.var(unbiased=False))
    irm_objective_value = irm_objective(logits, y, g, 4.0)  # the reference objective, divided by λ > 1
    torch.testing.assert_close(irm_objective_value, (risks.mean() + 4.0 * penalties.mean()) / 4.0)


def test_penalties_compose_with_group_dro_and_two_dro_terms_are_refused():
    model, dro = Net(), GroupDRO(num_groups=2, eta=0.0)
    _attach(model, dro)
    _attach(model, IRM(penalty_weight=2.0, anneal_steps=0))
    x, y, g = _batch([0, 0, 1, 1])
    logits = model(x)
    means = torch.stack([F.cross_entropy(logits[g == e], y[g == e]) for e in (0, 1)])
    penalty = torch.stack([irm_penalty(logits[g == e], y[g == e]) for e in (0, 1)]).mean()
    torch.testing.assert_close(model.robust_step([x, y, g], 0)["loss"], means.mean() + 2.0 * penalty)
    with pytest.raises(MisconfigurationException, match="cannot be combined with group_dro"):
        _attach(model, CVaRDRO(alpha=0.5))


def test_vrex_is_invariant_to_adding_a_constant_to_every_risk():
    risks = torch.tensor([0.3, 1.2, 0.7])
    torch.testing.assert_close(vrex_penalty(risks + 5.0), vrex_penalty(risks))
    torch.testing.assert_close(vrex_objective(risks + 5.0, 2.0), vrex_objective(risks, 2.0) + 5.0)
    torch.testing.assert_close(vrex_penalty(risks), torch.tensor(np.var([0.3, 1.2, 0.7]), dtype=torch.float32))
    means, ids = environment_risks(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([3, 1, 3]))
    assert means.tolist() == [2.0, 2.5] and ids.tolist() == [1, 3]


def test_cvar_weights_average_the_worst_fraction():
    losses = torch.tensor([0.5, 3.0, 1.0, 2.0, 4.0])
    torch.testing.assert_close((cvar_weights(losses, 0.4) * losses).sum(), torch.tensor(3.5))
    torch.testing.assert_close((cvar_weights(losses, 1.0) * losses).sum(), losses.mean())
    # α·n = 1.5: the worst loss in full, half of the second worst
    torch.testing.assert_close((cvar_weights(losses, 0.3) * losses).sum(), torch.tensor((4.0 + 0.5 * 3.0) / 1.5))


def test_chi_square_weights_solve_the_constrained_problem():
    losses = torch.tensor([0.2, 1.5, 0.7, 2.5, 0.1, 0.9], dtype=torch.float64)
    rho = 0.3
    q = chi_square_weights(losses, rho)
    n = len(losses)
    assert q.min() >= 0 and torch.isclose(q.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert float(0.5 * n * ((q - 1 / n) ** 2).sum()) == pytest.approx(rho, abs=1e-6)
    values = losses.numpy()
    result = minimize(
        lambda p: -p @ values, np.full(n, 1 / n), method="SLSQP", bounds=[(0, 1)] * n,
        constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1},
                     {"type": "ineq", "fun": lambda p: rho - 0.5 * n * ((p - 1 / n) ** 2).sum()}],
    )
    assert float(q @ losses) == pytest.approx(-result.fun, abs=1e-5)
    assert torch.equal(chi_square_weights(losses, 0.0), torch.full((n,), 1 / n, dtype=torch.float64))
    assert chi_square_weights(losses, 100.0).argmax() == 3  # the ball holds the point mass


def test_sample_dro_terms_give_the_robust_objective():
    model = Net()
    _attach(model, CVaRDRO(alpha=0.5))
    x, y, g = _batch([0] * 6)
    per_sample = F.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(model.robust_step([x, y], 0)["loss"], per_sample.topk(3).values.mean())
    model.unregister("cvar_dro")
    _attach(model, ChiSquareDRO(rho=0.2))
    expected = (chi_square_weights(per_sample.detach(), 0.2) * per_sample).sum()
    torch.testing.assert_close(model.robust_step([x, y], 0)["loss"], expected)


def test_group_objectives_without_groups_explain_the_batch_layout():
    model = Net()
    _attach(model, GroupDRO(num_groups=2))
    x, y, _ = _batch([0, 1])
    with pytest.raises(MisconfigurationException, match=r"yield \(x, y, group\)"):
        model.robust_step([x, y], 0)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: GroupDRO(eta=-1), "eta >= 0"),
        (lambda: GroupDRO(num_groups=0), "num_groups >= 1"),
        (lambda: CVaRDRO(alpha=0), "0 < alpha <= 1"),
        (lambda: ChiSquareDRO(rho=-1), "rho >= 0"),
        (lambda: IRM(penalty_weight=-1), "penalty_weight >= 0"),
        (lambda: VREx(anneal_steps=-1), "anneal_steps >= 0"),
    ],
)
def test_arguments_are_validated(factory, message):
    with pytest.raises(MisconfigurationException, match=message):
        factory()


def test_colored_digits_correlate_colour_with_label_in_training_and_reverse_it_at_test():
    dm = ColoredDigitsDataModule(image_size=8, batch_size=64)
    for split, low, high in (("train", 0.8, 0.9), ("val", 0.75, 0.95), ("test", 0.03, 0.17)):
        dataset = dm._parts[split]
        colour = dataset.groups % 2
        labels = torch.tensor(dataset.targets)
        agreement = (colour == labels).float().mean().item()
        assert low < agreement < high, (split, agreement)
        assert torch.equal(dataset.groups // 2, labels)
        red, green = dataset.images[:, 0].flatten(1).sum(1), dataset.images[:, 1].flatten(1).sum(1)
        assert torch.equal(colour == 1, green > red)
    x, y, g = next(iter(dm.test_dataloader()))
    assert g.dtype == torch.int64 and x.shape[1] == 3
    assert dm.train_group_counts == tuple(torch.bincount(dm._parts["train"].groups, minlength=4).tolist())
    assert len(dm.fingerprint()) == 64


def test_groups_suite_reports_per_group_worst_and_average_accuracy():
    images = torch.zeros(6, 1, 1, 1)
    images[:, 0, 0, 0] = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    dataset = GroupImages(images, [1, 1, 0, 1, 0, 0], [0, 0, 1, 1, 2, 2], ("a", "b", "c"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():  # predicts 1 for positive inputs, 0 for negative ones
        model[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[1].bias.zero_()
    metrics = GroupSuite().evaluate(model, DataLoader(dataset, batch_size=4))
    rows = {(m.name, m.context.get("group")): m.value for m in metrics}
    assert rows == {
        ("accuracy", "a"): 1.0, ("accuracy", "b"): 0.5, ("accuracy", "c"): 0.5,
        ("worst_group_accuracy", None): 0.5, ("average_accuracy", None): pytest.approx(2 / 3),
    }


def test_groups_suite_explains_missing_groups():
    dataset = torch.utils.data.TensorDataset(torch.zeros(2, 1), torch.tensor([0, 1]))
    with pytest.raises(MisconfigurationException, match="group-annotated evaluation set"):
        GroupSuite().evaluate(nn.Linear(1, 2), DataLoader(dataset))


class Predictor(L.LightningModule):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)

    def test_step(self, batch, batch_idx):
        return None


def test_groups_suite_in_a_trainer_matches_evaluate_for_any_batch_size():
    generator = torch.Generator().manual_seed(3)
    dataset = GroupImages(torch.rand(23, 1, 2, 2, generator=generator), torch.randint(0, 2, (23,)).tolist(),
                          torch.randint(0, 3, (23,), generator=generator).tolist(), ("a", "b", "c"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    expected = GroupSuite().evaluate(model, DataLoader(dataset, batch_size=23))
    suite = GroupSuite()
    trainer = L.Trainer(callbacks=[suite], accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.test(Predictor(model), DataLoader(dataset, batch_size=4), verbose=False)
    assert [(m.name, m.context, m.value) for m in suite.results] == [(m.name, m.context, m.value) for m in expected]
    assert len(expected) == 5
