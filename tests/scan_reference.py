"""The S6 selective scan written step by step from its equations: the reference every scan path is tested
against (the PyTorch scan in tests/models, the compiled kernel in tests/kernels)."""

import torch
import torch.nn.functional as F


def scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The S6 recurrence one step at a time, written from the equations (autograd gives the gradients)."""
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    dt = F.softplus(dt) if delta_softplus else dt
    h, ys = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []
    for t in range(u.shape[2]):
        dA = torch.exp(dt[:, :, t, None] * A)  # (B, D, N)
        dBu = dt[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        h = dA * h + dBu
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * z * torch.sigmoid(z)
    return y


def random_inputs(batch, dim, length, d_state, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length),
        "A": -torch.rand(dim, d_state, generator=g, dtype=dtype) * 4,
        "B": r(batch, d_state, length),
        "C": r(batch, d_state, length),
        "D": r(dim),
        "z": r(batch, dim, length),
        "delta_bias": r(dim),
    }
