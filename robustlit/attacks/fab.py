"""FAB and FAB-T: the Fast Adaptive Boundary attack, a minimum-norm attack under L∞, L2 and L1.

Reference: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack",
ICML 2020; the targeted version and the settings are those of AutoAttack (fra31/auto-attack).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlit.attacks._common import eval_mode, per_sample_norm
from robustlit.attacks.precision import misclassified
from robustlit.rng import normal, sample_seeds, uniform

FAB_NORMS = ("Linf", "L2", "L1")
DUAL_ORDERS = {"Linf": 1.0, "L2": 2.0, "L1": float("inf")}


def hyperplane_box_projection(points: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """Smallest step ``d`` (in ``norm``) with ``<w, points + d> = b`` and ``points + d`` in [0, 1].

    Rows are independent problems. When the hyperplane does not meet the box, the step goes to the
    box corner that gets closest to it. Computed in float64 and returned in the dtype of ``points``.

    Args:
        points: ``(N, D)`` points in [0, 1].
        w: ``(N, D)`` normals of the hyperplanes.
        b: ``(N,)`` offsets of the hyperplanes.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.

    Returns:
        The steps ``d``, shape ``(N, D)``.

    Example:
        >>> import torch
        >>> x, w = torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 1.0]])
        >>> hyperplane_box_projection(x, w, torch.tensor([1.5]), "L2")
        tensor([[0.2500, 0.2500]])
        >>> hyperplane_box_projection(x, torch.tensor([[2.0, 1.0]]), torch.tensor([1.7]), "L1")  # steepest only
        tensor([[0.1000, 0.0000]])
        >>> hyperplane_box_projection(x, torch.tensor([[1.0, 0.0]]), torch.tensor([1.2]), "Linf")  # out of reach
        tensor([[0.5000, 0.0000]])
    """
    p, w, b = points.double(), w.double(), b.double()
    gap = b - (w * p).sum(dim=1)
    # orient every normal so that the hyperplane lies in its positive direction
    w = torch.where(gap[:, None] < 0, -w, w)
    gap = gap.abs()
    room = torch.where(w > 0, 1.0 - p, p)  # how far each coordinate can move in its useful direction
    magnitude = w.abs()
    if norm == "Linf":
        # every coordinate moves by the same amount ρ, or less where the box stops it
        level = _fill_level(magnitude, room, gap)
        step = torch.minimum(level[:, None], room) * w.sign()
    elif norm == "L2":
        # the KKT conditions give d = λ·w, clipped to the box, for the λ that reaches the hyperplane
        reach = torch.where(magnitude > 0, room / magnitude.clamp_min(1e-300), 0.0)
        level = _fill_level(magnitude.square(), reach, gap)
        step = torch.minimum(level[:, None], reach) * w
    else:
        step = _l1_step(magnitude, room, gap) * w.sign()
    return step.to(points.dtype)


def _fill_level(slope: Tensor, cap: Tensor, target: Tensor) -> Tensor:
    """Per row, the ``λ ≥ 0`` with ``Σ_i slope_i · min(λ, cap_i) = target`` (the largest cap if unreachable).

    The left side is piecewise linear and non-decreasing in λ with kinks at the caps, so sorting the caps
    and accumulating gives its value at every kink; the solution lies on the first segment reaching target.
    """
    caps, order = cap.sort(dim=1)
    slopes = slope.gather(1, order)
    saturated = (slopes * caps).cumsum(dim=1) - slopes * caps  # contribution of the caps below each kink
    free = slopes.flip(1).cumsum(dim=1).flip(1)  # slope of the still-free coordinates at each kink
    at_kink = saturated + caps * free
    segment = (at_kink < target[:, None]).sum(dim=1)
    reachable = segment < caps.shape[1]
    segment = segment.clamp(max=caps.shape[1] - 1)[:, None]
    level = (target - saturated.gather(1, segment).squeeze(1)) / free.gather(1, segment).squeeze(1).clamp_min(1e-300)
    return torch.where(reachable, level, caps[:, -1])


def _l1_step(magnitude: Tensor, room: Tensor, gap: Tensor) -> Tensor:
    """Sizes of the L1-smallest step: fill the coordinates with the largest ``|w_i|`` first, up to the box."""
    weights, order = magnitude.sort(dim=1, descending=True)
    rooms = room.gather(1, order)
    gains = weights * rooms
    before = gains.cumsum(dim=1) - gains  # progress made by the coordinates filled earlier
    partial = ((gap[:, None] - before) / weights.clamp_min(1e-300)).clamp(min=0.0)
    sizes = torch.minimum(partial, rooms)
    return torch.zeros_like(sizes).scatter(1, order, sizes)


def fab_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    steps: int = 100,
    n_target_classes: int = 9,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Targeted FAB (FAB-T): find small perturbations that flip the label towards each of the top classes.

    For each target class ``t`` (the ``n_target_classes`` highest clean logits other than ``y``), every
    iteration linearizes ``z_t − z_y`` at the current point and projects both the current point and the
    clean input onto that linear decision boundary intersected with the [0, 1] box. It steps to a
    mixture of the two projections, with weight ``alpha = min(‖d_current‖ / (‖d_current‖ + ‖d_clean‖),
    alpha_max)`` on the clean one, overshooting by ``eta``. Each point that crosses the boundary is
    recorded if it is the closest so far, and is then pulled back towards ``x`` by ``beta``. Only
    points correctly classified and not yet fooled within ε go on to the next target or restart.
    The model runs in eval mode with gradients from ``torch.autograd.grad``: BatchNorm statistics and
    parameter gradients are untouched.

    Args:
        model: Any module mapping inputs in [0, 1] to logits.
        x: Clean inputs, shape ``(N, ...)``, values in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)`` (their argmax is the label).
        eps: Radius in input units; perturbations found larger than ε count as failures.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        steps: Iterations per target class and restart.
        n_target_classes: Target classes to try, clamped to ``K − 1``.
        restarts: Runs per target class; the first starts at ``x``, later ones at a random point at
            distance ε/2 (the reference's half of the smaller of ε and the best distance found, which is
            more than ε for every point still attacked).
        alpha_max: Largest weight of the step from the clean input.
        eta: Overshoot factor of the projection steps.
        beta: Backward step: a point that crossed the boundary restarts at ``x + beta (x_adv − x)``.
        seed: Seed of the random restarts.
        sample_ids: Stable ids of the samples (default ``arange(N)``); random starts come from
            per-sample streams, so results do not depend on batch size or order.

    Returns:
        Adversarial inputs (detached): the smallest perturbation found within ε, in [0, 1]; ``x`` for
        the points not fooled within ε.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> x_adv = fab_targeted(model, x, y, eps=0.3, steps=10)
        >>> bool(((x_adv - x).abs() <= 0.3 + 1e-6).all())
        True
    """
    return _fab_attack(
        model, x, y, eps=eps, norm=norm, steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta,
        seed=seed, sample_ids=sample_ids, n_target_classes=n_target_classes,
    )


def fab(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """Untargeted FAB: every iteration heads for the closest linearized decision boundary of any class.

    Each step linearizes ``z_k − z_y`` for every class ``k`` (one backward pass per class), keeps the
    boundary at the smallest distance ``|z_k − z_y| / ‖∇(z_k − z_y)‖_*`` (dual norm), and then moves
    exactly as :func:`fab_targeted` does. AutoAttack's ``plus`` version runs it with 5 restarts.

    Args:
        model: Any module mapping inputs in [0, 1] to logits.
        x: Clean inputs, shape ``(N, ...)``, values in [0, 1].
        y: Labels ``(N,)`` or soft targets ``(N, K)``.
        eps: Radius in input units; perturbations found larger than ε count as failures.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        steps: Iterations per restart.
        restarts: Runs; the first starts at ``x``, later ones at a random point at distance ε/2.
        alpha_max: Largest weight of the step from the clean input.
        eta: Overshoot factor of the projection steps.
        beta: Backward step after a crossing.
        seed: Seed of the random restarts.
        sample_ids: Stable ids of the samples (default ``arange(N)``).

    Returns:
        Adversarial inputs (detached), ``x`` for the points not fooled within ε.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> x_adv = fab(model, x, y, eps=0.3, steps=10)
        >>> bool(((x_adv - x).abs() <= 0.3 + 1e-6).all())
        True
    """
    return _fab_attack(
        model, x, y, eps=eps, norm=norm, steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta,
        seed=seed, sample_ids=sample_ids, n_target_classes=None,
    )


def _fab_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    restarts: int,
    alpha_max: float,
    eta: float,
    beta: float,
    seed: int,
    sample_ids: Tensor | None,
    n_target_classes: int | None,
) -> Tensor:
    """FAB-T over the top ``n_target_classes`` targets, or untargeted FAB when it is ``None``."""
    name = "fab" if n_target_classes is None else "fab_targeted"
    if norm not in FAB_NORMS:
        raise ValueError(f"{name} supports norm='Linf', 'L2' or 'L1', got norm={norm!r}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if steps < 1 or restarts < 1 or (n_target_classes is not None and n_target_classes < 1):
        raise ValueError(
            f"steps, restarts and n_target_classes must be at least 1, got steps={steps}, "
            f"restarts={restarts}, n_target_classes={n_target_classes}"
        )
    if not 0 <= alpha_max <= 1 or eta < 1 or not 0 < beta < 1:
        raise ValueError(f"need 0 <= alpha_max <= 1, eta >= 1 and 0 < beta < 1; got {alpha_max=}, {eta=}, {beta=}")
    x = x.detach()
    result = x.clone()
    if eps == 0:
        return result
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    ids = (torch.arange(x.shape[0]) if sample_ids is None else sample_ids).to(x.device)
    with eval_mode(model):
        with torch.no_grad():
            logits = model(x)
        pending = ~misclassified(model, logits, x, labels)
        if n_target_classes is None:
            runs: list[Tensor | None] = [None]
        else:
            n_targets = min(n_target_classes, logits.shape[1] - 1)
            top = logits.scatter(1, labels[:, None], float("-inf")).topk(n_targets, dim=1).indices
            runs = list(top.T)
        for run, targets in enumerate(runs):
            for restart in range(restarts):
                index = pending.nonzero().squeeze(1)
                if index.numel() == 0:
                    return result
                start = x[index]
                if restart > 0:
                    seeds = sample_seeds(seed, ids[index], stream=run * restarts + restart)
                    start = _random_start(start, seeds, eps / 2, norm)
                if targets is None:
                    linearize = _toward_closest_class(model, labels[index], norm)
                else:
                    linearize = _toward_class(model, labels[index], targets[index])
                adversarial, distance = _fab_run(
                    linearize, model, x[index], labels[index], start, eps, norm, steps, alpha_max, eta, beta
                )
                fooled = distance <= eps
                result[index[fooled]] = adversarial[fooled]
                pending[index[fooled]] = False
    return result


def _random_start(x: Tensor, seeds: Tensor, radius: float, norm: str) -> Tensor:
    """A random point at distance ``radius`` from ``x`` in ``norm`` (before clipping to [0, 1])."""
    if norm == "Linf":
        noise = 2.0 * uniform(seeds, x.shape[1:], dtype=x.dtype) - 1.0
    else:
        noise = normal(seeds, x.shape[1:], dtype=x.dtype)
    return (x + radius * noise / per_sample_norm(noise, norm).clamp_min(1e-12)).clamp(0.0, 1.0)


Linearization = Callable[[Tensor], tuple[Tensor, Tensor]]


def _toward_class(model: nn.Module, labels: Tensor, targets: Tensor) -> Linearization:
    """Linearize ``z_target − z_label`` at a point: returns the gap and its input gradient."""
    rows = torch.arange(labels.shape[0], device=labels.device)

    def linearize(point: Tensor) -> tuple[Tensor, Tensor]:
        point = point.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(point)
            gap = logits[rows, targets] - logits[rows, labels]
            (grad,) = torch.autograd.grad(gap.sum(), point)
        return gap.detach(), grad

    return linearize


def _toward_closest_class(model: nn.Module, labels: Tensor, norm: str) -> Linearization:
    """Linearize every ``z_k − z_label`` and keep, per sample, the boundary closest in ``norm``.

    The distance to the linearized boundary of class ``k`` is ``|gap_k| / ‖∇gap_k‖_*`` with ``‖·‖_*``
    the dual norm. Each class costs one backward pass through the shared forward graph.
    """
    rows = torch.arange(labels.shape[0], device=labels.device)
    dual = DUAL_ORDERS[norm]

    def linearize(point: Tensor) -> tuple[Tensor, Tensor]:
        point = point.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(point)
            classes = logits.shape[1]
            own = logits[rows, labels]
            grads = torch.stack([
                torch.autograd.grad((logits[:, k] - own).sum(), point, retain_graph=k < classes - 1)[0]
                for k in range(classes)
            ], dim=1)
        gaps = (logits - own[:, None]).detach()
        distance = gaps.abs() / torch.linalg.vector_norm(grads.flatten(2), ord=dual, dim=2).clamp_min(1e-12)
        closest = distance.scatter(1, labels[:, None], float("inf")).argmin(dim=1)
        return gaps[rows, closest], grads[rows, closest]

    return linearize


def _fab_run(
    linearize: Linearization,
    model: nn.Module,
    x0: Tensor,
    labels: Tensor,
    start: Tensor,
    eps: float,
    norm: str,
    steps: int,
    alpha_max: float,
    eta: float,
    beta: float,
) -> tuple[Tensor, Tensor]:
    """One FAB run along ``linearize``'s boundaries; returns the closest adversarial points and their distances.

    Crossings steer the search as the attacked model sees them; one recorded within ``eps`` must also
    be misclassified by the model in its own precision (see :func:`~robustlit.attacks.precision.misclassified`).
    """
    flat0 = x0.flatten(1)
    point = start
    best = x0.clone()
    best_distance = torch.full((x0.shape[0],), float("inf"), device=x0.device)
    for _ in range(steps):
        gap, grad = linearize(point)
        with torch.no_grad():
            point = point.detach()
            # the linearized boundary {z : gap + <grad, z - point> = 0}
            w = grad.flatten(1)
            b = (w * point.flatten(1)).sum(dim=1) - gap
            to_boundary = hyperplane_box_projection(point.flatten(1), w, b, norm).view_as(point)
            from_clean = hyperplane_box_projection(flat0, w, b, norm).view_as(point)
            near = per_sample_norm(to_boundary, norm).clamp_min(1e-8)
            far = per_sample_norm(from_clean, norm).clamp_min(1e-8)
            # lean on the clean input's projection when the current point is far from the boundary
            alpha = (near / (near + far)).clamp(max=alpha_max)
            point = ((1 - alpha) * (point + eta * to_boundary) + alpha * (x0 + eta * from_clean)).clamp(0.0, 1.0)
            logits = model(point)
            fooled = logits.argmax(dim=1) != labels
            distance = per_sample_norm(point - x0, norm).flatten()
            closer = fooled & (distance < best_distance)
            # a crossing within ε is a result: the model in its own precision must agree that it is one
            counts = closer & (distance <= eps)
            closer[counts] = misclassified(model, logits[counts], point[counts], labels[counts])
            best[closer] = point[closer]
            best_distance[closer] = distance[closer]
            # from a point that crossed, step back towards the clean input to look for a closer crossing
            point = torch.where(fooled.view(-1, *[1] * (x0.ndim - 1)), x0 + beta * (point - x0), point)
    return best, best_distance


@dataclass
class FAB:
    """Untargeted FAB with fixed settings, callable on any model; see :func:`fab` for the arguments.

    Example:
        >>> import torch
        >>> attack = FAB(eps=8 / 255, steps=5, restarts=2)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    eps: float
    norm: str = "Linf"
    steps: int = 100
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.norm not in FAB_NORMS:
            raise ValueError(f"{type(self).__name__} supports norm='Linf', 'L2' or 'L1', got norm={self.norm!r}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`fab`."""
        return fab(
            model, x, y, eps=self.eps, norm=self.norm, steps=self.steps, restarts=self.restarts,
            alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, seed=self.seed, sample_ids=sample_ids,
        )


@dataclass
class FABT(FAB):
    """FAB-T with fixed settings, callable on any model; see :func:`fab_targeted` for the arguments.

    Example:
        >>> import torch
        >>> attack = FABT(eps=8 / 255, steps=5)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 2, 2])
    """

    n_target_classes: int = 9

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, sample_ids: Tensor | None = None) -> Tensor:
        """Attack ``(x, y)``; see :func:`fab_targeted`."""
        return fab_targeted(
            model, x, y, eps=self.eps, norm=self.norm, steps=self.steps, n_target_classes=self.n_target_classes,
            restarts=self.restarts, alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, seed=self.seed,
            sample_ids=sample_ids,
        )
