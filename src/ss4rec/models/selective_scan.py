"""The selective scan (S6) of Mamba behind one function, ``selective_scan``.

Shapes (mamba_ssm's): ``B`` batch, ``D`` channels (d_inner), ``L`` length, ``N`` d_state::

    dt  = softplus(delta + delta_bias)              if delta_softplus else delta + delta_bias   (B, D, L)
    h_t = exp(dt_t A) * h_{t-1} + dt_t B_t u_t       h: (B, D, N), A: (D, N), B_t: (B, N)
    y_t = <h_t, C_t> + D u_t ;   out = y * silu(z)                                           (B, D, L)

On CUDA, when ``mamba_ssm`` imports, its fused kernel runs (untested here: no GPU in development). On the
CPU, in float32 (and half precisions, computed in float32), the compiled kernel of ``ss4rec.kernels`` runs
when it could be built: states kept per (batch, channel) pair, softplus, ``delta_bias``, ``D`` and the ``z``
gate fused, the backward recomputing states. Everywhere else (float64, no compiler, ``SS4REC_KERNELS=off``)
a pure-PyTorch scan runs with a memory-lean custom backward: the forward keeps only the
output and the state at the start of each chunk of ``chunk`` steps; the backward recomputes one chunk's
states at a time and runs the adjoint recurrence backwards through it. Peak memory is a few
(chunk, B, D, N) tensors instead of several (L, B, D, N) ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ss4rec import kernels
from ss4rec.kernels.scan import selective_scan_compiled, supports

try:  # optional CUDA kernel; a missing or broken install must never break import
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception:  # noqa: BLE001 - any failure (ImportError, missing .so, CUDA mismatch) means "absent"
    _cuda_selective_scan = None

#: elements of one (chunk, B, D, N) buffer the CPU scan aims for (32 MB in float32)
CHUNK_ELEMENTS = 2**23


def _chunk_states(h0, dt, u, A, B_t, dA, h):
    """States of one chunk, written into the buffers ``dA`` and ``h`` (T, B, D, N).

    h0 (B, D, N) state before the chunk; dt, u (T, B, D); A (D, N); B_t (T, B, N).
    Fills dA = exp(dt A) and h_t = dA_t h_{t-1} + dt_t B_t u_t. Reusing buffers matters on CPU: a fresh
    32 MB tensor per chunk costs page faults comparable to the arithmetic on it.
    """
    torch.mul(dt[..., None], A, out=dA).exp_()
    torch.mul((dt * u)[..., None], B_t[:, :, None, :], out=h)
    h[0].addcmul_(dA[0], h0)
    for t in range(1, h.shape[0]):
        h[t].addcmul_(dA[t], h[t - 1])


class _SelectiveScanChunked(torch.autograd.Function):
    """y_t = <h_t, C_t> for the recurrence above (no D, z, bias or softplus: autograd handles those)."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, chunk):
        # time-major copies so every step touches contiguous memory: (L, B, D) and (L, B, N)
        uT, dtT = u.permute(2, 0, 1).contiguous(), dt.permute(2, 0, 1).contiguous()
        BT, CT = B.permute(2, 0, 1).contiguous(), C.permute(2, 0, 1).contiguous()
        L, Bt, Dm = uT.shape
        buffers = u.new_empty(2, min(chunk, L), Bt, Dm, A.shape[1])  # dA and h of one chunk
        y = u.new_empty(L, Bt, Dm)
        starts = u.new_zeros(-(-L // chunk), Bt, Dm, A.shape[1])  # state before each chunk
        for c, s in enumerate(range(0, L, chunk)):
            e = min(s + chunk, L)
            dA, hs = buffers[0, : e - s], buffers[1, : e - s]
            _chunk_states(starts[c], dtT[s:e], uT[s:e], A, BT[s:e], dA, hs)
            # <h_t, C_t>, (T, B, D); dA is free as scratch (multiply-and-sum beats a batched mat-vec here)
            torch.sum(torch.mul(hs, CT[s:e, :, None, :], out=dA), -1, out=y[s:e])
            if c + 1 < starts.shape[0]:
                starts[c + 1] = hs[-1]
        ctx.save_for_backward(uT, dtT, A, BT, CT, starts)
        ctx.chunk = chunk
        return y.permute(1, 2, 0)  # (B, D, L)

    @staticmethod
    def backward(ctx, grad_y):
        uT, dtT, A, BT, CT, starts = ctx.saved_tensors
        gT = grad_y.permute(2, 0, 1).contiguous()  # (L, B, D)
        L, Bt, Dm = uT.shape
        du, ddt = torch.empty_like(uT), torch.empty_like(dtT)
        dB, dC = torch.empty_like(BT), torch.empty_like(CT)
        dA_param = torch.zeros_like(A)
        buffers = uT.new_empty(3, min(ctx.chunk, L), Bt, Dm, A.shape[1])  # dA, h, G of one chunk
        carry = torch.zeros_like(starts[0])  # dA_{e} * G_{e} from the chunk after this one, (B, D, N)
        for c in reversed(range(starts.shape[0])):
            s, e = c * ctx.chunk, min((c + 1) * ctx.chunk, L)
            dt, u, g = dtT[s:e], uT[s:e], gT[s:e]
            dA, hs, G = buffers[0, : e - s], buffers[1, : e - s], buffers[2, : e - s]
            _chunk_states(starts[c], dt, u, A, BT[s:e], dA, hs)
            torch.matmul(g[:, :, None, :], hs, out=dC[s:e, :, None, :])  # sum_d g h, (T, B, 1, N)
            # adjoint G_t = dL/dh_t = g_t C_t + dA_{t+1} G_{t+1}, (T, B, D, N)
            torch.mul(g[..., None], CT[s:e, :, None, :], out=G)
            G[-1].add_(carry)
            for t in range(G.shape[0] - 2, -1, -1):
                G[t].addcmul_(dA[t + 1], G[t + 1])
            carry = dA[0] * G[0]
            torch.matmul((dt * u)[:, :, None, :], G, out=dB[s:e, :, None, :])  # sum_d G dt u, (T, B, 1, N)
            # hs <- dA_t * h_{t-1} (shift the states one step, then scale); dA is scratch from here on
            for t in range(hs.shape[0] - 1, 0, -1):
                hs[t].copy_(hs[t - 1])
            hs[0].copy_(starts[c])
            hs.mul_(dA)
            GB = torch.mul(G, BT[s:e, :, None, :], out=dA).sum(-1)  # sum_n G B, (T, B, D)
            du[s:e] = GB * dt
            W = G.mul_(hs)  # dL/d(dt A) = G * dA * h_{t-1}, (T, B, D, N)
            ddt[s:e] = GB * u + torch.mul(W, A, out=dA).sum(-1)
            dA_param += torch.mul(W, dt[..., None], out=dA).sum((0, 1))
        return (
            du.permute(1, 2, 0),
            ddt.permute(1, 2, 0),
            dA_param,
            dB.permute(1, 2, 0),
            dC.permute(1, 2, 0),
            None,
        )


def _default_chunk(batch: int, d_inner: int, d_state: int, length: int) -> int:
    return max(1, min(length, CHUNK_ELEMENTS // max(1, batch * d_inner * d_state)))


def selective_scan_torch(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk=None
):
    """Pure-PyTorch selective scan (any device); same arguments and result as ``selective_scan``."""
    if A.is_complex() or B.dim() != 3 or C.dim() != 3:
        raise NotImplementedError(
            "the PyTorch scan supports real A (D, N) and input-dependent B, C (B, N, L)"
        )
    with torch.autocast(u.device.type, enabled=False):  # float32 at least, as mamba_ssm's scan
        return _selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk)


def _selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
    dtype_in = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, dt = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    chunk = chunk or _default_chunk(u.shape[0], u.shape[1], A.shape[1], u.shape[2])
    y = _SelectiveScanChunked.apply(u, dt, A.to(dtype), B.to(dtype), C.to(dtype), chunk)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(dtype_in)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with mamba_ssm's signature.

    u, delta: (B, D, L); A: (D, N) real; B, C: (B, N, L); D: (D,); z: (B, D, L); delta_bias: (D,).
    Returns (B, D, L). Uses mamba_ssm's CUDA kernel when it imported and ``u`` is on a GPU, the compiled
    CPU kernel for CPU inputs it supports (not float64) when it is available, else the PyTorch scan.
    """
    if _cuda_selective_scan is not None and u.is_cuda:
        return _cuda_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if supports(u, A, B, C, delta, D, z, delta_bias) and kernels.library() is not None:
        return selective_scan_compiled(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
