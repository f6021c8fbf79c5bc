"""Time-aware S5: a diagonal complex state space layer whose step changes at every position.

Continuous system per sequence, state size ``P``, width ``H``::

    x'(s) = Lambda x(s) + B_tilde u(s),    y = Re(C_tilde x) + D * u

Zero-order hold over a step ``dt`` gives ``Lambda_bar = exp(Lambda dt)`` and
``B_bar = (Lambda_bar - 1) / Lambda * B_tilde``. Position ``t`` of sequence ``b`` uses the step
``dt[b, t] * exp(log_step)`` (one learned step per state, scaled by the time gap of that position).

Parameters carry the names, shapes and dtypes of ``s5-pytorch`` 0.2.1's ``S5`` (``seq.Lambda`` (P,) complex64,
``seq.B`` (P, H, 2) float32 = real and imaginary parts of ``B_tilde``, ``seq.C`` (H, P) complex64, ``seq.D`` (H,),
``seq.log_step`` (P,)), so state dicts load both ways. Unlike that package, the (B, L, P, H) tensor of per-step
``B_bar`` matrices is never built: ``B_tilde u`` is computed once, (B, L, P), then scaled per step.

``clip_eigs`` (the default) keeps the real part of every eigenvalue at most ``MAX_REAL`` (-1e-4), as the JAX S5's
``clip_eigs`` does; s5-pytorch and the official SS4Rec leave ``Lambda`` free. Training can push a real part
above zero, and then ``exp(Lambda dt)`` over a gap of weeks in seconds overflows float32 (measured: an ML-1M run
with ``weight_decay=1e-4`` reached a real part of +7.8e-4 and a NaN loss in its 14th epoch). While every real
part is at most ``MAX_REAL`` the clip changes nothing, outputs and gradients alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ss4rec.models.derived import Derived
from ss4rec.models.linear_scan import _discretize, zoh_scan


# ---------------------------------------------------------------------------------------------------------
# HiPPO initialisation
# ---------------------------------------------------------------------------------------------------------
def hippo_legs(N: int) -> torch.Tensor:
    """The HiPPO-LegS matrix (N, N), float64: -sqrt(2n+1)sqrt(2k+1) below the diagonal, -(n+1) on it."""
    n = torch.arange(N, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    A = -torch.tril(root[:, None] * root[None, :], diagonal=-1)
    return A - torch.diag(n + 1)


def hippo_diagonal(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonalise the normal part of HiPPO-LegS: Lambda (N,) and unitary V (N, N), both complex128.

    ``A + p p^T`` with ``p_n = sqrt(n + 1/2)`` equals ``-I/2 + S`` where S is skew-symmetric. ``-i S`` is
    Hermitian with real eigenvalues ``w`` (ascending) and eigenvectors V, so ``Lambda = -1/2 + i w``.
    """
    p = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    normal = hippo_legs(N) + p[:, None] * p[None, :]
    skew = (normal - normal.T) / 2
    w, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    Lambda = torch.diagonal(normal).mean() + 1j * w
    return Lambda, V


def lecun_normal(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """s5-pytorch's "LeCun normal", float64: a standard normal truncated to +-2, times 0.8796 / sqrt(fan_in).

    JAX divides by 0.8796 (restoring variance 1 / fan_in); s5-pytorch multiplies, so its draws have a standard
    deviation of about 0.774 / sqrt(fan_in). We follow s5-pytorch, which the official SS4Rec code ran.
    """
    draw = nn.init.trunc_normal_(torch.empty(shape, dtype=torch.float64), std=1.0, a=-2.0, b=2.0)
    return draw * (0.87962566103423978 / math.sqrt(fan_in))


# ---------------------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------------------
#: with ``clip_eigs``, the largest real part an eigenvalue may have (JAX S5's bound): the state never grows
MAX_REAL = -1e-4


class S5SSM(nn.Module):
    """Holds the S5 parameters (named as in s5-pytorch); the computation lives in ``S5.forward``."""

    def __init__(self, width: int, state_width: int, dt_min: float, dt_max: float, clip_eigs: bool = True):
        super().__init__()
        self.clip_eigs = clip_eigs
        H, P = width, state_width
        Lambda, V = hippo_diagonal(P)
        B = V.conj().T @ lecun_normal((P, H), fan_in=P).to(torch.complex128)  # B_tilde = V^-1 B, (P, H)
        C = torch.complex(lecun_normal((H, P), fan_in=P * H), lecun_normal((H, P), fan_in=P * H))
        C = C @ V  # C_tilde = C V, (H, P)
        log_step = torch.empty(P).uniform_(math.log(dt_min), math.log(dt_max))
        self.Lambda = nn.Parameter(Lambda.to(torch.complex64))
        self.B = nn.Parameter(torch.view_as_real(B).to(torch.float32).contiguous())  # (P, H, 2)
        self.C = nn.Parameter(C.to(torch.complex64))
        self.D = nn.Parameter(torch.rand(H))
        self.log_step = nn.Parameter(log_step)
        for p in (self.Lambda, self.D, self.log_step):
            p._no_weight_decay = True

    def eigenvalues(self) -> torch.Tensor:
        """Lambda (P,) as the layer uses it: with ``clip_eigs``, real parts above ``MAX_REAL`` set to it (no
        gradient flows to a clipped real part, as with JAX S5's clip)."""
        if not self.clip_eigs:
            return self.Lambda
        return torch.complex(self.Lambda.real.clamp(max=MAX_REAL), self.Lambda.imag)


class S5(nn.Module):
    """S5 layer with per-position steps.

    ``forward(u, step_scale)``: u (B, L, H); step_scale a float, (B,) or (B, L) time gaps; returns (B, L, H).
    A zero gap gives ``B_bar = 0`` and ``Lambda_bar = 1``: that position's input is ignored and the state is
    carried unchanged (the official SS4Rec behaviour on ties, and what padding relies on).
    Computes in complex64 for float32 input and complex128 for float64 input.

    ``step(u_t, step_scale_t, state)`` advances one position (recurrent inference); starting from
    ``allocate_state`` and stepping through a sequence gives exactly ``forward``'s outputs.
    """

    def __init__(
        self,
        width: int,
        state_width: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        clip_eigs: bool = True,
    ):
        super().__init__()
        self.width = width
        self.state_width = state_width or width
        self.seq = S5SSM(width, self.state_width, dt_min, dt_max, clip_eigs)

    def forward(
        self, u: torch.Tensor, step_scale: float | torch.Tensor = 1.0, parallel: bool | None = None
    ) -> torch.Tensor:
        with torch.autocast(u.device.type, enabled=False):  # complex arithmetic: float32 at least
            dtype_in = u.dtype
            y = self._forward(u.to(torch.promote_types(u.dtype, torch.float32)), step_scale, parallel)
        return y.to(dtype_in)

    def _forward(
        self, u: torch.Tensor, step_scale: float | torch.Tensor, parallel: bool | None
    ) -> torch.Tensor:
        Bt, L, H = u.shape
        P = self.state_width
        step_scale = torch.as_tensor(step_scale, dtype=u.dtype, device=u.device)
        if step_scale.dim() == 1:
            step_scale = step_scale[:, None]  # one gap per sequence
        step = step_scale.expand(Bt, L)[..., None] * torch.exp(self.seq.log_step.to(u.dtype))  # (B, L, P)
        Lambda = self.seq.eigenvalues().to(torch.promote_types(u.dtype, torch.complex64))

        # B_tilde u with real matmuls: (B, L, H) @ (H, P*2) -> (B, L, P, 2) -> complex (B, L, P)
        B_real = self.seq.B.to(u.dtype).permute(1, 0, 2).reshape(H, P * 2)
        Bu = torch.view_as_complex((u @ B_real).reshape(Bt, L, P, 2))

        x = zoh_scan(Lambda, step, Bu, parallel)  # (B, L, P)

        # Re(C_tilde x) = C.re x.re - C.im x.im as one real matmul: (B, L, P*2) @ (P*2, H)
        C = self.seq.C
        C_real = torch.stack([C.real, -C.imag], dim=-1).to(u.dtype).reshape(H, P * 2)
        y = torch.view_as_real(x).reshape(Bt, L, P * 2) @ C_real.T
        return y + self.seq.D.to(u.dtype) * u

    # ---- recurrent inference: one position at a time ------------------------------------------------
    def allocate_state(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """The state before the first position: zeros (B, P), complex64 (float32) or complex128 (float64)."""
        complex_dtype = torch.promote_types(torch.promote_types(dtype, torch.float32), torch.complex64)
        return torch.zeros(batch, self.state_width, dtype=complex_dtype, device=device)

    def step(
        self, u: torch.Tensor, step_scale: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One position: u (B, H), step_scale (B,) encoded gaps, state (B, P) -> (y (B, H), new state (B, P)).

        The same zero-order hold as ``forward`` (``Lambda_bar = exp(Lambda dt)``, ``B_bar = (Lambda_bar - 1) /
        Lambda B_tilde``, computed by the same ``_discretize``); ``state`` is not modified.
        """
        with torch.autocast(u.device.type, enabled=False):
            dtype_in = u.dtype
            u = u.to(torch.promote_types(u.dtype, torch.float32))
            rate, Lambda, B_real, C_real_T, D = self._step_constants(u.dtype, state.dtype)
            step = step_scale.to(u.dtype)[:, None] * rate  # (B, P)
            Bu = torch.view_as_complex((u @ B_real).view(u.shape[0], -1, 2))  # B_tilde u, (B, P)
            Lambda_bar, zoh = _discretize(Lambda, step)
            state = Lambda_bar * state + zoh * Bu  # (B, P)
            y = torch.addcmul(torch.view_as_real(state).view(u.shape[0], -1) @ C_real_T, D, u)  # Re(C x) + D u
        return y.to(dtype_in), state

    def _step_constants(self, dtype: torch.dtype, complex_dtype: torch.dtype):
        """exp(log_step) (P,), Lambda (P,), B_tilde as (H, 2P), [C.re, -C.im] as (2P, H), D (H,)."""

        def build():
            H, P = self.width, self.state_width
            C = self.seq.C
            return (
                torch.exp(self.seq.log_step.to(dtype)),
                self.seq.eigenvalues().to(complex_dtype),
                self.seq.B.to(dtype).permute(1, 0, 2).reshape(H, P * 2),
                torch.stack([C.real, -C.imag], dim=-1).to(dtype).reshape(H, P * 2).T.contiguous(),
                self.seq.D.to(dtype),
            )

        if not hasattr(self, "_derived"):
            self._derived = Derived()
        return self._derived.get(list(self.seq.parameters()), build, dtype, complex_dtype)
