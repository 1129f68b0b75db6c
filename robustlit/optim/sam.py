"""Weight perturbations of SAM and ASAM (pure PyTorch)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def sam_perturbation(
    named_parameters: Iterable[tuple[str, Tensor]], rho: float, adaptive: bool = False, eta: float = 0.01
) -> dict[str, Tensor]:
    """The ascent step ``e(w)`` of SAM, or of ASAM when ``adaptive``, from the parameters' current gradients.

    SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021):
    ``e = ρ·g / ‖g‖₂``. ASAM (Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization", ICML 2021):
    ``e = ρ·T²g / ‖T g‖₂`` with ``T = |w| + η`` on weights (names containing ``"weight"``) and ``T = 1`` on
    the rest (biases), as in the paper's reference code. The norm runs over all parameters together.

    Args:
        named_parameters: ``(name, parameter)`` pairs; parameters without a gradient are skipped.
        rho: Neighbourhood radius ρ (> 0).
        adaptive: ASAM's scale-invariant neighbourhood instead of SAM's Euclidean ball.
        eta: ASAM's η, which keeps zero weights perturbable.

    Returns:
        ``name → e`` for every parameter with a gradient (empty if none has one).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> sam_perturbation([("w", w)], rho=0.5)["w"].tolist()
        [0.30000001192092896, 0.4000000059604645]
    """
    scaled: dict[str, tuple[Tensor, Tensor | None]] = {}
    for name, parameter in named_parameters:
        if parameter.grad is None:
            continue
        scale = parameter.detach().abs().add(eta) if adaptive and "weight" in name else None
        grad = parameter.grad.detach().float()
        scaled[name] = (grad if scale is None else grad * scale.float(), scale)
    if not scaled:
        return {}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g, _ in scaled.values()]))
    factor = rho / (norm + 1e-12)
    return {name: (g if scale is None else g * scale.float()) * factor for name, (g, scale) in scaled.items()}
