"""Compare two sets of tensors (gradients, outputs) per tensor with a relative tolerance.

An absolute tolerance is blind to tensors smaller than itself: SS4Rec's ``dt_proj`` and ``A_log``
gradients are ~1e-11 at initialisation, so ``allclose(gpu, cpu, atol=1e-5)`` passes a GPU that returns
zeros for them. Here each tensor is compared to its own size: ``||actual - expected|| / ||expected||``.
"""

from __future__ import annotations

import torch


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.to(torch.complex128) if tensor.is_complex() else tensor.double()  # S5's B, C are complex


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` in float64 (inf when ``expected`` is zero and they differ)."""
    a, e = _wide(actual), _wide(expected)
    if a.shape != e.shape:
        return float("inf")
    diff, size = torch.linalg.vector_norm(a - e).item(), torch.linalg.vector_norm(e).item()
    if size == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / size


def mismatches(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rtol: float
) -> dict[str, float]:
    """Names whose relative error exceeds ``rtol`` (or that only one side has), with the error."""
    bad = {name: float("inf") for name in actual.keys() ^ expected.keys()}
    for name in actual.keys() & expected.keys():
        error = relative_error(actual[name], expected[name])
        if not error <= rtol:  # NaN fails too
            bad[name] = error
    return dict(sorted(bad.items()))
