"""Auto-PGD: APGD-CE, APGD-DLR and the targeted APGD-T, under L∞, L2 and L1 constraints.

Reference: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (fra31/auto-attack); the L1 version follows Croce & Hein,
"Mind the Box: l1-APGD for Sparse Adversarial Attacks on Image Classifiers", ICML 2021.

APGD is PGD with momentum whose step size needs no tuning: it starts large and is halved at
checkpoints where the loss stopped improving, and each halving restarts from the best point so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from robustlit.attacks._common import check_norm, eval_mode, per_sample_norm, project, resolve_loss, steepest_ascent
from robustlit.attacks.l1 import l1_steepest_ascent
from robustlit.attacks.losses import targeted_dlr_loss
from robustlit.attacks.precision import misclassified
from robustlit.rng import normal, sample_seeds, uniform

LossFn = Callable[[Tensor, Tensor], Tensor]
RunLoss = Callable[[Tensor, Tensor], Tensor]
"""Loss of one run: ``(logits, rows) -> per-sample loss``, ``rows`` indexing the run's points."""
Round = tuple[int, Callable[[Tensor], RunLoss]]
"""A run of the schedule: its random stream, and the loss to use for the given points of the batch."""

MOMENTUM = 0.75
"""Weight of the new gradient step against the previous displacement (L∞ and L2)."""
L1_INITIAL_SPARSITY = 0.2
"""Fraction of coordinates the first L1 steps move, before it follows the best point's support."""


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    loss: str | LossFn = "ce",
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    parallel: bool | None = None,
    large_reps: bool = False,
) -> Tensor:
    """Untargeted Auto-PGD (APGD-CE with ``loss="ce"``, APGD-DLR with ``loss="dlr"``).

    Each run starts from a random point of the ball and takes ``steps`` steps of size 2ε (ε for L1)
    with momentum 0.75, keeping the point of highest loss. At checkpoints after 22%, 41%, 57%, …
    of the steps (intervals shrinking by 3% down to 6%), a point's step is halved, and the point sent
    back to its best iterate, when fewer than ``rho`` of the steps since the last checkpoint raised its
    loss, or when its best loss has not moved since a checkpoint that left the step alone.

    For L1 the steps are sparse and the projection is exact onto the L1 ball intersected with the
    box (see :mod:`robustlit.attacks.l1`). As in l1-APGD, the step moves a fraction of the
    coordinates that starts at 20% and follows the sparsity of the best point (its support / 1.5),
    checkpoints come every 4% of the steps, the step size shrinks by 1.5 (to no less than ε/10) or
    resets to ε and restarts from the best point when that support shrank by 5%, and there is no
    momentum. Use ``restarts=5`` for L1, as the reference does.

    A point leaves the batch as soon as it is misclassified, and further restarts only attack the
    points still classified correctly, so the cost falls as the attack succeeds.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs ``(N, ...)`` in [0, 1].
        y: Labels ``(N,)``, or soft targets ``(N, K)`` whose argmax is the label.
        eps: Radius of the threat model in input units (e.g. ``8/255``).
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        loss: ``"ce"``, ``"dlr"``, another name of :data:`robustlit.attacks._common.LOSSES`, or a
            callable ``(logits, y) -> per-sample loss`` to maximize.
        steps: Iterations per run (the reference uses 100).
        restarts: Runs from independent random starts, each on the points not yet fooled.
        rho: Fraction of steps since the last checkpoint that must raise the loss to keep the step size.
        seed: Seed of the random starts.
        sample_ids: Stable ids of the samples (default: their position); each sample's random start
            comes from its own stream, so results do not depend on batch size or order.
        parallel: Run a point's restarts side by side in one batch of ``N × restarts`` rows instead of
            one after another; see :func:`apgd_targeted`. The fooled points are the same; ``None`` runs
            side by side except on the CPU.
        large_reps: L1 only: the reference's schedule for L1 AutoAttack. Each run spends 30% of its
            steps in the ball of radius 3ε, 30% at 2ε and the rest at ε, each stage starting from the
            previous stage's point of highest loss projected onto the smaller ball; only the last stage
            can fool a point.

    Returns:
        Adversarial inputs (detached) in the ε-ball and in [0, 1]: for each point the first iterate
        that fooled the model, else the iterate of highest loss over all runs; the clean input for
        points misclassified from the start.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> x_adv = apgd(model, x, y, eps=8 / 255, steps=10)
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    _check_arguments(eps, norm, steps, restarts, rho, large_reps)
    loss_fn = resolve_loss(loss)

    def rounds(_clean_logits: Tensor) -> Iterator[Round]:
        for restart in range(restarts):
            yield restart, _untargeted_loss(loss_fn, y)

    return _attack(model, x, y, rounds, eps=eps, norm=norm, steps=steps, rho=rho, seed=seed, sample_ids=sample_ids,
                   parallel=parallel, large_reps=large_reps)


def apgd_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    steps: int = 100,
    n_target_classes: int = 9,
    restarts: int = 1,
    rho: float = 0.75,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    parallel: bool | None = None,
    large_reps: bool = False,
) -> Tensor:
    """Targeted Auto-PGD (APGD-T): APGD on the targeted DLR loss towards each of the top target classes.

    The targets are the classes with the 2nd, 3rd, … highest clean logit. Runs and checkpoints are
    those of :func:`apgd`. The reference uses 9 targets for L∞/L2 and 5 for L1.

    With ``parallel=True`` every target (and restart) of a point runs at the same time, as one batch
    of ``N × n_target_classes × restarts`` rows, and all runs of a point stop as soon as one of them
    fools the model. Each run is per-row (its own random start, step size and checkpoints), so a point
    is fooled exactly when some target would have fooled it in the reference's order, where each
    target only runs on the points the earlier ones missed: the fooled points are the same, reached
    with ``n_target_classes`` times fewer and larger batches, which keeps a GPU busy. On a CPU the
    larger batches are slower per point, so ``parallel=None`` (the default) runs side by side on
    accelerators and one target after another on the CPU, where memory stays at ``N`` rows.

    Args:
        model: Any module mapping images in [0, 1] to logits (at least 4 classes).
        x: Clean inputs ``(N, ...)`` in [0, 1].
        y: Labels ``(N,)``, or soft targets ``(N, K)`` whose argmax is the label.
        eps: Radius of the threat model in input units.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        steps: Iterations per run.
        n_target_classes: How many target classes to try (clamped to ``K - 1``).
        restarts: Runs per target class.
        rho: Step-size rule threshold, as in :func:`apgd`.
        seed: Seed of the random starts.
        sample_ids: Stable ids of the samples (default: their position), as in :func:`apgd`.
        parallel: Run all targets and restarts of a point side by side (see above); ``None`` does so
            except on the CPU.
        large_reps: L1 only: the reference's 3ε → 2ε → ε schedule per run, as in :func:`apgd`.

    Returns:
        Adversarial inputs (detached) in the ε-ball and in [0, 1], chosen as in :func:`apgd`.

    Raises:
        ValueError: For models with fewer than 4 classes, where targeted DLR is undefined.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])
        >>> apgd_targeted(model, x, y, eps=0.5, norm="L2", steps=10, n_target_classes=2).shape
        torch.Size([4, 3, 2, 2])
    """
    _check_arguments(eps, norm, steps, restarts, rho, large_reps)
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be at least 1, got {n_target_classes}")
    labels = _labels(y)

    def rounds(clean_logits: Tensor) -> Iterator[Round]:
        classes = clean_logits.shape[1]
        if classes < 4:
            raise ValueError(
                f"apgd_targeted needs a model with at least 4 classes (targeted DLR), this one has {classes}; "
                "use apgd(loss='ce') instead"
            )
        ranking = clean_logits.argsort(dim=1, descending=True)
        for rank in range(1, min(n_target_classes, classes - 1) + 1):
            for restart in range(restarts):
                yield (rank - 1) * restarts + restart, _targeted_loss(labels, ranking[:, rank])

    return _attack(model, x, y, rounds, eps=eps, norm=norm, steps=steps, rho=rho, seed=seed, sample_ids=sample_ids,
                   parallel=parallel, large_reps=large_reps)


def _untargeted_loss(loss_fn: LossFn, y: Tensor) -> Callable[[Tensor], RunLoss]:
    """``loss_fn`` against the true labels for the points ``index`` of the batch."""

    def for_points(index: Tensor) -> RunLoss:
        return lambda logits, rows: loss_fn(logits, y[index[rows]])

    return for_points


def _targeted_loss(labels: Tensor, target: Tensor) -> Callable[[Tensor], RunLoss]:
    """The targeted DLR loss towards ``target`` for the points ``index`` of the batch."""

    def for_points(index: Tensor) -> RunLoss:
        return lambda logits, rows: targeted_dlr_loss(logits, labels[index[rows]], target[index[rows]])

    return for_points


def checkpoints(steps: int, norm: str = "Linf") -> list[int]:
    """Iterations after which APGD may reduce its step size (those before the last iteration).

    L∞/L2: fractions ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``
    of ``steps``, computed in whole iterations as the reference does (first interval ``⌊0.22 n⌋``,
    shrinking by ``⌊0.03 n⌋`` down to ``⌊0.06 n⌋``, each at least 1). L1: every ``⌊0.04 n⌋`` steps.

    Example:
        >>> checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
        >>> checkpoints(100, "L1")[:3]
        [4, 8, 12]
    """
    if norm == "L1":
        interval, shrink, shortest = max(4 * steps // 100, 1), 0, 1
    else:
        interval, shrink, shortest = max(22 * steps // 100, 1), max(3 * steps // 100, 1), max(6 * steps // 100, 1)
    marks, position = [], interval
    while position < steps:
        marks.append(position)
        interval = max(interval - shrink, shortest)
        position += interval
    return marks


def large_reps_stages(eps: float, steps: int) -> list[tuple[float, int]]:
    """The reference's L1 "large reps" stages: (radius, steps) at 3ε, 2ε and ε.

    The first two stages get ``⌈0.3 · steps⌉`` steps each (fewer for tiny budgets, so the last stage
    keeps at least one) and the last stage the rest.

    Example:
        >>> large_reps_stages(12.0, 100)
        [(36.0, 30), (24.0, 30), (12.0, 40)]
    """
    first = min(math.ceil(0.3 * steps), (steps - 1) // 2)
    return [(3.0 * eps, first), (2.0 * eps, first), (eps, steps - 2 * first)]


def _check_arguments(eps: float, norm: str, steps: int, restarts: int, rho: float, large_reps: bool = False) -> None:
    check_norm(norm)
    if large_reps and norm != "L1":
        raise ValueError(f"large_reps is the reference's schedule for L1 attacks; norm={norm!r} does not use it")
    if large_reps and steps < 3:
        raise ValueError(f"large_reps splits the steps over 3 radii and needs steps >= 3, got steps={steps}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be at least 1, got steps={steps}, restarts={restarts}")
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}; the reference uses 0.75")


def _labels(y: Tensor) -> Tensor:
    return y.argmax(dim=1) if y.ndim == 2 else y


def _attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rounds: Callable[[Tensor], Iterable[Round]],
    *,
    eps: float,
    norm: str,
    steps: int,
    rho: float,
    seed: int,
    sample_ids: Tensor | None,
    parallel: bool | None,
    large_reps: bool = False,
) -> Tensor:
    """Run the rounds on the points classified correctly, one after another or side by side."""
    x = x.detach()
    if eps == 0:
        return x.clone()
    labels = _labels(y)
    ids = torch.arange(x.shape[0], device=x.device) if sample_ids is None else sample_ids.to(x.device)
    result = x.clone()
    result_loss = torch.full((x.shape[0],), float("-inf"), device=x.device)
    with eval_mode(model), torch.enable_grad():
        with torch.no_grad():
            clean_logits = model(x)
        robust = ~misclassified(model, clean_logits, x, labels)
        schedule = list(rounds(clean_logits))
        if parallel is None:
            parallel = x.device.type != "cpu"
        batches = [schedule] if parallel else [[run] for run in schedule]
        for batch in batches:
            index = robust.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            adversarial, loss, fooled = _run_side_by_side(model, x, labels, ids, index, batch, eps, norm, steps,
                                                          rho, seed, large_reps)
            better = fooled | (loss > result_loss[index])
            result[index[better]] = adversarial[better]
            result_loss[index[better]] = loss[better]
            robust[index[fooled]] = False
    return result


def _run_side_by_side(
    model: nn.Module, x: Tensor, labels: Tensor, ids: Tensor, index: Tensor, batch: list[Round], eps: float,
    norm: str, steps: int, rho: float, seed: int, large_reps: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the rounds of ``batch`` at once on the points ``index``, as ``len(batch)`` rows per point.

    All rows of a point stop when one of them fools the model. Returns, per point, the first fooling
    row's iterate (in round order) or the iterate of highest loss, that loss, and whether it fooled.
    """
    n, runs = index.numel(), len(batch)
    points = index.repeat(runs)
    stages = large_reps_stages(eps, steps) if large_reps else [(eps, steps)]
    start = torch.cat([
        _random_start(x[index], stages[0][0], norm, sample_seeds(seed, ids[index], stream=stream))
        for stream, _ in batch
    ])
    losses = [loss_for(index) for _, loss_for in batch]

    def loss_fn(logits: Tensor, rows: Tensor) -> Tensor:
        if runs == 1:
            return losses[0](logits, rows)
        # rows stay in ascending order, so each run's rows form one contiguous slice
        run_of_row = torch.div(rows, n, rounding_mode="floor")
        bounds = torch.searchsorted(run_of_row, torch.arange(runs + 1, device=rows.device)).tolist()
        return torch.cat([
            run_loss(logits[low:high], rows[low:high] - run * n)
            for run, (run_loss, low, high) in enumerate(zip(losses, bounds, bounds[1:], strict=False))
        ])

    groups = torch.arange(n, device=x.device).repeat(runs)
    rows_x, rows_labels = x[points], labels[points]
    for (radius, stage_steps), (next_radius, _) in zip(stages, stages[1:], strict=False):
        # a larger ball only looks for a good start: no row stops, and the next stage begins at its best iterate
        best, _, _ = _apgd_run(model, rows_x, rows_labels, loss_fn, start, radius, norm, stage_steps, rho, groups,
                               retire=False, sparsity_from_start=True)
        start = _feasible(best, rows_x, next_radius, norm)
    adversarial, loss, fooled = _apgd_run(model, rows_x, rows_labels, loss_fn, start, eps, norm, stages[-1][1], rho,
                                          groups, sparsity_from_start=large_reps)
    # per point: the first fooling row, else the row of highest loss (the first on ties)
    score = torch.where(fooled, float("inf"), loss).view(runs, n)
    pick = score.argmax(dim=0) * n + torch.arange(n, device=x.device)
    return adversarial[pick], loss[pick], fooled.view(runs, n).any(dim=0)


def _random_start(x: Tensor, eps: float, norm: str, seeds: Tensor) -> Tensor:
    """Random starts like the reference's, clipped to [0, 1].

    Uniform in the L∞ cube, uniform on the L2 sphere, or Gaussian noise projected onto the L1 ball
    and the box, which gives a sparse L1 start.
    """
    shape = x.shape[1:]
    if norm == "Linf":
        return (x + (2.0 * uniform(seeds, shape, dtype=x.dtype) - 1.0) * eps).clamp(0.0, 1.0)
    noise = normal(seeds, shape, dtype=x.dtype)
    if norm == "L2":
        noise = eps * noise / per_sample_norm(noise, norm).clamp_min(1e-12)
    return (x + project(noise, eps, norm, x)).clamp(0.0, 1.0)


@dataclass
class _Points:
    """State of the points a run still attacks, one row each."""

    rows: Tensor  # index of each point among the run's points
    groups: Tensor  # rows of the same group stop together
    x: Tensor
    point: Tensor
    previous: Tensor
    grad: Tensor
    loss: Tensor
    best_point: Tensor
    best_grad: Tensor
    best_loss: Tensor
    step: Tensor
    increases: Tensor  # steps that raised the loss since the last checkpoint
    best_loss_at_check: Tensor
    reduced_at_check: Tensor
    sparsity: Tensor  # L1: fraction of coordinates a step moves
    support_at_check: Tensor  # L1: nonzero coordinates of the best perturbation at the last checkpoint

    def keep(self, mask: Tensor) -> _Points:
        return _Points(**{field.name: getattr(self, field.name)[mask] for field in fields(self)})

    def back_to_best(self, mask: Tensor) -> None:
        self.point[mask] = self.best_point[mask]
        self.grad[mask] = self.best_grad[mask]
        self.loss[mask] = self.best_loss[mask]


def _apgd_run(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    loss_fn: RunLoss,
    start: Tensor,
    eps: float,
    norm: str,
    steps: int,
    rho: float,
    groups: Tensor,
    retire: bool = True,
    sparsity_from_start: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run; returns the adversarial points, their loss and which of them fool the model.

    Rows sharing a ``groups`` id are runs on the same point: when one fools the model, all stop. With
    ``retire=False`` no row stops early and each returns its iterate of highest loss. For L1,
    ``sparsity_from_start`` sizes the first steps by the start's support (support / 1.5), as the
    reference does for a given starting point, instead of 20 % of the coordinates.
    """
    n, dims = x.shape[0], x[0].numel()
    result, result_loss = x.clone(), torch.full((n,), float("-inf"), device=x.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    rows = torch.arange(n, device=x.device)
    logits, loss, grad = _loss_and_grad(model, start, rows, loss_fn)
    initial_step = eps if norm == "L1" else 2.0 * eps
    support = torch.full((n,), float(dims), device=x.device)
    sparsity = torch.full((n,), L1_INITIAL_SPARSITY, device=x.device)
    if sparsity_from_start:
        support = (start != x).flatten(1).sum(dim=1).to(sparsity.dtype)
        sparsity = support / dims / 1.5
    state = _Points(
        rows=rows, groups=groups, x=x, point=start, previous=start, grad=grad, loss=loss, best_point=start.clone(),
        best_grad=grad.clone(), best_loss=loss.clone(), step=torch.full((n,), initial_step, device=x.device),
        increases=torch.zeros(n, device=x.device), best_loss_at_check=loss.clone(),
        reduced_at_check=torch.ones(n, dtype=torch.bool, device=x.device),
        sparsity=sparsity, support_at_check=support,
    )
    if retire:
        state = _retire(model, state, logits, labels, result, result_loss, fooled)
    marks, last_mark = set(checkpoints(steps, norm)), 0
    for iteration in range(steps):
        if state.rows.numel() == 0:
            break
        with torch.no_grad():
            candidate = _step(state, eps, norm, first=iteration == 0)
        logits, loss, grad = _loss_and_grad(model, candidate, state.rows, loss_fn)
        with torch.no_grad():
            state.increases += loss > state.loss
            state.previous, state.point, state.grad, state.loss = state.point, candidate, grad, loss
            improved = loss > state.best_loss
            state.best_point[improved] = candidate[improved]
            state.best_grad[improved] = grad[improved]
            state.best_loss[improved] = loss[improved]
            if retire:
                state = _retire(model, state, logits, labels, result, result_loss, fooled)
            if iteration + 1 in marks:
                _checkpoint(state, eps, norm, rho, iteration + 1 - last_mark, dims)
                last_mark = iteration + 1
    result[state.rows] = state.best_point
    result_loss[state.rows] = state.best_loss
    return result, result_loss, fooled


def _loss_and_grad(model: nn.Module, point: Tensor, rows: Tensor, loss_fn: RunLoss) -> tuple[Tensor, Tensor, Tensor]:
    point = point.detach().requires_grad_(True)
    logits = model(point)
    loss = loss_fn(logits, rows)
    (grad,) = torch.autograd.grad(loss.sum(), point)
    return logits.detach(), loss.detach(), grad.detach()


def _retire(
    model: nn.Module, state: _Points, logits: Tensor, labels: Tensor, result: Tensor, result_loss: Tensor,
    fooled: Tensor,
) -> _Points:
    """Record the rows whose current iterate is misclassified and drop them, with their groups, from the run."""
    done = misclassified(model, logits, state.point, labels[state.rows])
    if not done.any():
        return state
    rows = state.rows[done]
    result[rows] = state.point[done]
    result_loss[rows] = state.loss[done]
    fooled[rows] = True
    siblings = torch.isin(state.groups, state.groups[done]) & ~done
    result[state.rows[siblings]] = state.best_point[siblings]
    result_loss[state.rows[siblings]] = state.best_loss[siblings]
    return state.keep(~(done | siblings))


def _feasible(point: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Closest point of the threat model (exact for L∞ and L1; L2 projects, then clips to the box)."""
    return (x + project(point - x, eps, norm, x)).clamp(0.0, 1.0)


def _step(state: _Points, eps: float, norm: str, *, first: bool) -> Tensor:
    step = state.step.view(-1, *[1] * (state.x.ndim - 1))
    if norm == "L1":
        direction = l1_steepest_ascent(state.grad, state.sparsity, state.point)
        return _feasible(state.point + step * direction, state.x, eps, norm)
    plain = _feasible(state.point + step * steepest_ascent(state.grad, norm), state.x, eps, norm)
    if first:
        return plain
    momentum = (state.point - state.previous) * (1.0 - MOMENTUM)
    return _feasible(state.point + MOMENTUM * (plain - state.point) + momentum, state.x, eps, norm)


def _checkpoint(state: _Points, eps: float, norm: str, rho: float, interval: int, dims: int) -> None:
    """Adapt each point's step size (and, for L1, its sparsity) and send some back to their best point."""
    if norm == "L1":
        support = (state.best_point != state.x).flatten(1).sum(dim=1).to(state.step.dtype)
        restart = support < 0.95 * state.support_at_check
        state.step = torch.where(restart, eps, state.step / 1.5).clamp(eps / 10, eps)
        state.sparsity = support / dims / 1.5
        state.support_at_check = support
    else:
        stalled = ~state.reduced_at_check & (state.best_loss <= state.best_loss_at_check)
        restart = (state.increases < rho * interval) | stalled
        state.step = torch.where(restart, state.step / 2, state.step)
        state.reduced_at_check = restart
        state.best_loss_at_check = state.best_loss.clone()
        state.increases = torch.zeros_like(state.increases)
    state.back_to_best(restart)


@dataclass
class APGD:
    """APGD with fixed settings, callable on any model; see :func:`apgd` for the arguments.

    Example:
        >>> import torch
        >>> attack = APGD(eps=8 / 255, loss="dlr", steps=10)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    eps: float
    norm: str = "Linf"
    loss: str = "ce"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        _check_arguments(self.eps, self.norm, self.steps, self.restarts, self.rho)
        resolve_loss(self.loss)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`apgd`."""
        return apgd(
            model, x, y, eps=self.eps, norm=self.norm, loss=self.loss, steps=self.steps, restarts=self.restarts,
            rho=self.rho, seed=self.seed, sample_ids=sample_ids,
        )


@dataclass
class APGDT:
    """APGD-T with fixed settings, callable on any model; see :func:`apgd_targeted` for the arguments.

    Example:
        >>> import torch
        >>> attack = APGDT(eps=8 / 255, steps=10, n_target_classes=3)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    eps: float
    norm: str = "Linf"
    steps: int = 100
    n_target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        _check_arguments(self.eps, self.norm, self.steps, self.restarts, self.rho)
        if self.n_target_classes < 1:
            raise ValueError(f"n_target_classes must be at least 1, got {self.n_target_classes}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`apgd_targeted`."""
        return apgd_targeted(
            model, x, y, eps=self.eps, norm=self.norm, steps=self.steps, n_target_classes=self.n_target_classes,
            restarts=self.restarts, rho=self.rho, seed=self.seed, sample_ids=sample_ids,
        )
