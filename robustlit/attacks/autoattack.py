"""AutoAttack: a fixed ensemble of parameter-free attacks, run on the points still robust.

Reference: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (fra31/auto-attack). The compositions and their settings follow
the reference's ``standard``, ``plus`` and ``rand`` versions; see :data:`VERSIONS`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustlit.attacks._common import check_norm, eval_mode, per_sample_norm
from robustlit.attacks.precision import accepts_channels_last, with_precision

AttackPlan = list[tuple[str, dict[str, Any]]]

_APGD_T = {"steps": 100, "n_target_classes": 9, "restarts": 1}
_FAB_T = {"steps": 100, "n_target_classes": 9, "restarts": 1}
_SQUARE = {"queries": 5000, "p_init": 0.8, "restarts": 1}

VERSIONS: dict[str, dict[str, AttackPlan]] = {
    "standard": {
        "Linf": [("apgd-ce", {"steps": 100, "restarts": 1}), ("apgd-t", _APGD_T), ("fab-t", _FAB_T),
                 ("square", _SQUARE)],
        "L2": [("apgd-ce", {"steps": 100, "restarts": 1}), ("apgd-t", _APGD_T), ("fab-t", _FAB_T),
               ("square", _SQUARE)],
        # The reference's L1 version: APGD with 5 restarts and APGD-T with 5 target classes, both on the
        # 3ε → 2ε → ε "large reps" schedule, then FAB-T. (The reference ends with an L1 Square attack,
        # which robustlit does not have yet.)
        "L1": [("apgd-ce", {"steps": 100, "restarts": 5, "large_reps": True}),
               ("apgd-t", {**_APGD_T, "n_target_classes": 5, "large_reps": True}), ("fab-t", _FAB_T)],
    },
    # The reference's plus version: 5 restarts for the untargeted APGD and FAB runs, then the targeted ones.
    "plus": {
        norm: [("apgd-ce", {"steps": 100, "restarts": 5}), ("apgd-dlr", {"steps": 100, "restarts": 5}),
               ("fab", {"steps": 100, "restarts": 5}), ("square", _SQUARE), ("apgd-t", _APGD_T),
               ("fab-t", _FAB_T)]
        for norm in ("Linf", "L2")
    },
    # For randomized defenses: expectation over transformation (EOT) with 20 forward passes per query.
    "rand": {
        norm: [("apgd-ce", {"steps": 100, "restarts": 1}), ("apgd-dlr", {"steps": 100, "restarts": 1})]
        for norm in ("Linf", "L2")
    },
}


class EOTModel(nn.Module):
    """Average the logits of ``n`` forward passes of a randomized model (expectation over transformation).

    Reference: Athalye et al., "Synthesizing Robust Adversarial Examples", ICML 2018. Averaging the
    logits makes the gradient of any loss an average over the model's randomness.

    Example:
        >>> import torch
        >>> noisy = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)).train()
        >>> EOTModel(noisy, n=50)(torch.ones(1, 4)).shape
        torch.Size([1, 2])
    """

    def __init__(self, model: nn.Module, n: int = 20) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"EOT needs at least one forward pass, got n={n}")
        self.model = model
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        """Mean logits over ``n`` passes."""
        return torch.stack([self.model(x) for _ in range(self.n)]).mean(dim=0)


@dataclass
class AutoAttackResult:
    """Outcome of :func:`autoattack` on a batch.

    Attributes:
        adversarial: For each point, the adversarial example found (the clean input if none was).
        clean: Which points the model classifies correctly without attack.
        robust: Which points survived every attack (the point-wise worst case).
        robust_after: Robust flags after each attack, in the order run (cumulative).
        seconds: Wall time of each attack.
    """

    adversarial: Tensor
    clean: Tensor
    robust: Tensor
    robust_after: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        """Fraction of points that are robust."""
        return float(self.robust.float().mean())


def autoattack_plan(version: str, norm: str) -> AttackPlan:
    """The attacks (name, settings) a version runs for a norm.

    Example:
        >>> [name for name, _ in autoattack_plan("standard", "Linf")]
        ['apgd-ce', 'apgd-t', 'fab-t', 'square']
    """
    check_norm(norm)
    if version not in VERSIONS:
        raise ValueError(f"AutoAttack version={version!r} is unknown; choose one of {', '.join(VERSIONS)}")
    if norm not in VERSIONS[version]:
        raise ValueError(f"AutoAttack version={version!r} does not support norm={norm!r}; use version='standard'")
    return [(name, dict(settings)) for name, settings in VERSIONS[version][norm]]


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    version: str = "standard",
    plan: AttackPlan | None = None,
    seed: int = 0,
    sample_ids: Tensor | None = None,
    batch_size: int | None = None,
    eot_iter: int = 20,
    precision: str = "fp32",
    channels_last: bool | None = None,
    progress: bool = False,
    state_path: str | os.PathLike[str] | None = None,
) -> AutoAttackResult:
    """Run AutoAttack: each attack only on the points that all previous attacks failed to fool.

    The attacks may query a faster copy of the model (``precision``, ``channels_last``), but whether
    a point is classified correctly, before and after each attack, is always decided by ``model``
    itself in its own precision, so a reduced precision can weaken the search but never make up an
    adversarial example.

    Args:
        model: Any module mapping images in [0, 1] to logits.
        x: Clean inputs in [0, 1].
        y: True labels ``(N,)``.
        eps: Radius of the threat model in input units.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        version: ``"standard"``, ``"plus"`` or ``"rand"`` (EOT for randomized models).
        plan: Custom ``[(attack name, settings), …]`` replacing the version's list; names are keys of
            :data:`robustlit.attacks.ATTACKS`.
        seed: Seed of every attack's per-sample random streams.
        sample_ids: Stable ids of the samples, so results do not depend on batching (default: position).
        batch_size: Points attacked at once (default: all remaining).
        eot_iter: Forward passes averaged per query in the ``rand`` version.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: autocast for the attacks' forward and
            backward passes (the perturbation and the losses stay fp32).
        channels_last: Feed the attacks' model channels-last inputs; ``None`` does so for image
            batches the model accepts, which is several times faster for convolutions on CPU and GPU.
        progress: Show a progress bar per attack.
        state_path: File to save progress to after each attack; a later call with the same inputs
            and settings resumes after the last finished attack.

    Returns:
        Adversarial examples, clean/robust flags, per-attack robust flags and timings.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> result = autoattack(model, x, y, eps=8 / 255, plan=[("pgd", {"steps": 5})])
        >>> bool((result.robust <= result.clean).all())
        True
    """
    from robustlit.attacks import ATTACKS

    steps = autoattack_plan(version, norm) if plan is None else list(plan)
    unknown = [name for name, _ in steps if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown} in the AutoAttack plan; choose from {', '.join(ATTACKS)}")
    ids = torch.arange(x.shape[0], device=x.device) if sample_ids is None else sample_ids.to(x.device)
    target = EOTModel(model, eot_iter) if version == "rand" and plan is None else model
    if channels_last is None:
        channels_last = accepts_channels_last(model, x)
    attacker = with_precision(target, precision, channels_last)
    key = _state_key(x, y, eps, norm, version, steps, seed, ids, precision)
    state = _load_state(state_path, key, x.device)
    with eval_mode(model):
        if state is None:
            clean = _predict(target, x, batch_size) == y
            state = {"key": key, "adversarial": x.detach().clone(), "clean": clean, "robust": clean.clone(),
                     "robust_after": {}, "seconds": {}}
        for label, (name, settings) in zip(_labels(steps), steps, strict=True):
            if label in state["robust_after"]:
                continue  # finished before the state was saved
            began = time.perf_counter()
            _run_attack(ATTACKS[name], name, settings, attacker, target, x, y, ids, eps, norm, seed, batch_size,
                        progress, state)
            state["robust_after"][label] = state["robust"].clone()
            state["seconds"][label] = time.perf_counter() - began
            _save_state(state_path, state)
    return AutoAttackResult(
        adversarial=state["adversarial"], clean=state["clean"], robust=state["robust"],
        robust_after=state["robust_after"], seconds=state["seconds"],
    )


def _run_attack(
    attack: Callable[..., Tensor], name: str, settings: dict[str, Any], attacker: nn.Module, model: nn.Module,
    x: Tensor, y: Tensor, ids: Tensor, eps: float, norm: str, seed: int, batch_size: int | None, progress: bool,
    state: dict[str, Any],
) -> None:
    """Attack the still-robust points in chunks and record the ones ``model`` gets wrong within the ε-ball."""
    remaining = state["robust"].nonzero().squeeze(1)
    chunk = batch_size or max(len(remaining), 1)
    chunks = list(remaining.split(chunk))
    bar = tqdm(chunks, desc=f"{name} ({norm}, eps={eps:.4g})", disable=not progress, leave=False, unit="batch")
    for index in bar:
        adversarial = attack(attacker, x[index], y[index], eps=eps, norm=norm, seed=seed, sample_ids=ids[index],
                             **settings)
        within = per_sample_norm(adversarial - x[index], norm).flatten() <= eps * (1 + 1e-5) + 1e-7
        fooled = (_predict(model, adversarial, None) != y[index]) & within
        state["adversarial"][index[fooled]] = adversarial[fooled].detach()
        state["robust"][index[fooled]] = False
        bar.set_postfix(robust=int(state["robust"].sum()))


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    chunk = batch_size or max(x.shape[0], 1)
    return torch.cat([model(part).argmax(dim=1) for part in x.split(chunk)])


def _state_key(x: Tensor, y: Tensor, eps: float, norm: str, version: str, plan: AttackPlan, seed: int,
               ids: Tensor, precision: str) -> str:
    """Fingerprint of everything that determines the result, so a state file is only reused for the same job."""
    digest = hashlib.sha256()
    for tensor in (x, y, ids):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr((round(eps, 10), norm, version, plan, seed, precision)).encode())
    return digest.hexdigest()


def _labels(plan: AttackPlan) -> list[str]:
    """Attack names, numbered where a plan runs the same attack twice."""
    names = [name for name, _ in plan]
    return [name if names.count(name) == 1 else f"{name}#{i}" for i, name in enumerate(names)]


def _load_state(path: str | os.PathLike[str] | None, key: str, device: torch.device) -> dict[str, Any] | None:
    if path is None or not Path(path).is_file():
        return None
    state = torch.load(path, weights_only=True)
    if state.get("key") != key:
        return None
    return _to_device(state, device)


def _to_device(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _save_state(path: str | os.PathLike[str] | None, state: dict[str, Any]) -> None:
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    torch.save(_to_device(state, "cpu"), temporary)
    os.replace(temporary, target)
