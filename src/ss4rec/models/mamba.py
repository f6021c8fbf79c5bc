"""The Mamba (S6) block, parameter for parameter compatible with ``mamba_ssm``'s ``Mamba`` (mamba_simple.py).

Parameters (``d_inner = expand * d_model``, ``dt_rank = ceil(d_model / 16)`` by default):
``in_proj`` Linear(d_model, 2 d_inner, bias=False), ``conv1d`` depthwise Conv1d(d_inner, d_inner, d_conv,
bias=True), ``x_proj`` Linear(d_inner, dt_rank + 2 d_state, bias=False), ``dt_proj`` Linear(dt_rank, d_inner),
``A_log`` (d_inner, d_state), ``D`` (d_inner,), ``out_proj`` Linear(d_inner, d_model, bias=False). State dicts
therefore move between this block and ``mamba_ssm.Mamba`` both ways.

Kernels: the causal convolution uses ``causal_conv1d`` and the scan uses mamba_ssm's kernel when they import
and the input is on CUDA (that path is not tested here: no GPU in development); otherwise plain PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ss4rec.models.derived import Derived
from ss4rec.models.selective_scan import selective_scan

try:  # optional CUDA kernel; a missing or broken install must never break import
    from causal_conv1d import causal_conv1d_fn as _cuda_causal_conv1d
except Exception:  # noqa: BLE001
    _cuda_causal_conv1d = None


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise causal convolution followed by SiLU: x (B, D, L), weight (D, 1, K), bias (D,) -> (B, D, L).

    Output t only sees inputs t-K+1..t. On CUDA: ``causal_conv1d`` when installed, else Conv1d with K-1 padding
    on both sides, keeping the first L outputs. On CPU: ``_CausalConvTimeMajor``, computed in (B, L, D) memory
    order and returned as a (B, D, L) view of it, which is the order the block's matmuls read and write.
    """
    if _cuda_causal_conv1d is not None and x.is_cuda:
        return _cuda_causal_conv1d(x, weight.squeeze(1), bias, activation="silu")
    if not x.is_cuda:
        return F.silu(_CausalConvTimeMajor.apply(x.transpose(1, 2), weight.squeeze(1), bias)).transpose(1, 2)
    K = weight.shape[-1]
    out = F.conv1d(x, weight, bias, padding=K - 1, groups=x.shape[1])
    return F.silu(out[..., : x.shape[-1]])


class _CausalConvTimeMajor(torch.autograd.Function):
    """out_t = bias + sum_k w_k x_{t-K+1+k} for x (B, L, D) in any strides, weight (D, K), bias (D,) or None;
    out (B, L, D) contiguous. K shifted multiply-adds along the time axis, vectorised over channels; the
    backward is the same in reverse time (dx) plus K channel-wise dot products (dw), with no (B, D, L) <->
    (B, L, D) transposing copies and none of the per-tap zero-filled gradients that autograd of slices makes.
    Runs in float32 for half-precision x (as mixed precision would accumulate; out is float32 then), else in
    x's dtype; weight and bias are cast to it, every gradient back to its input's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        length, K = x.shape[1], weight.shape[1]
        dtype = torch.promote_types(x.dtype, torch.float32)
        w = weight.to(dtype)
        xp = F.pad(x.to(dtype), (0, 0, K - 1, 0))  # (B, L + K - 1, D): K - 1 zeros before t = 0
        out = xp[:, :length] * w[:, 0]
        for k in range(1, K):
            out.addcmul_(xp[:, k : k + length], w[:, k])
        if bias is not None:
            out += bias.to(dtype)
        ctx.save_for_backward(xp, weight, bias)
        ctx.x_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, weight, bias = ctx.saved_tensors
        length, K = grad.shape[1], weight.shape[1]
        grad = grad.to(xp.dtype)
        w = weight.to(xp.dtype)
        # dx_t = sum_k w_k grad_{t+K-1-k}: the last tap first (no shift), then the earlier ones shifted back
        dx = grad * w[:, K - 1]
        for j in range(1, K):
            dx[:, : length - j].addcmul_(grad[:, j:], w[:, K - 1 - j])
        dw = torch.stack([(grad * xp[:, k : k + length]).sum((0, 1)) for k in range(K)], dim=1)
        dbias = grad.sum((0, 1)).to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
        return dx.to(ctx.x_dtype), dw.to(weight.dtype), dbias


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """SSM parameters run in float32 under half precision (as mamba_ssm does) and stay float64 in float64."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class Mamba(nn.Module):
    """Selective state space block: (B, L, d_model) -> (B, L, d_model).

    ``x, z = in_proj(h)``; ``x = silu(conv1d(x))``; ``dt, B, C = x_proj(x)``; ``dt = dt_proj(dt)`` (bias added
    inside the scan, then softplus); ``y = selective_scan(x, dt, A=-exp(A_log), B, C, D, z)``; ``out_proj(y)``.
    Initialisation follows mamba_ssm: dt bias = softplus^-1 of log-uniform steps in [dt_min, dt_max],
    ``dt_proj.weight`` uniform(+-dt_rank^-0.5 * dt_scale), ``A = -(1..d_state)`` per channel, ``D = 1``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self.reset_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)

        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))  # (d_inner, d_state), kept in float32
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    @torch.no_grad()
    def reset_dt_proj(self, dt_init="random", dt_scale=1.0, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        """mamba_ssm's dt initialisation: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"unknown dt_init {dt_init!r}")
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, d_model) -> (B, L, d_model); position t depends on positions <= t only."""
        # split in (B, L, .) order, then view as (B, d_inner, L): the gradients of x and z then arrive in
        # (B, L, d_inner) order and join into in_proj's gradient without a transposing copy
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, d_inner) views
        x = causal_conv1d(x.transpose(1, 2), self.conv1d.weight, self.conv1d.bias)  # (B, d_inner, L)
        z = z.transpose(1, 2)

        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, dt_rank + 2 d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # (B, d_inner, L), bias added in the scan
        B, C = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (B, d_state, L)
        A = -torch.exp(_at_least_fp32(self.A_log))  # (d_inner, d_state)
        D, dt_bias = _at_least_fp32(self.D), _at_least_fp32(self.dt_proj.bias)
        y = selective_scan(x, dt, A, B, C, D, z=z, delta_bias=dt_bias, delta_softplus=True)  # (B, d_inner, L)
        return self.out_proj(y.transpose(1, 2))

    # ---- recurrent inference: one position at a time (mamba_ssm's ``step``) -------------------------------
    def allocate_state(
        self, batch: int, dtype: torch.dtype = torch.float32, device=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """States before the first position: conv state (B, d_inner, d_conv), the last ``d_conv`` inputs of
        the causal convolution (zeros = the convolution's left padding), and SSM state (B, d_inner, d_state)."""
        conv = torch.zeros(batch, self.d_inner, self.d_conv, dtype=dtype, device=device)
        ssm = torch.zeros(batch, self.d_inner, self.d_state, dtype=_at_least_fp32(conv).dtype, device=device)
        return conv, ssm

    def step(
        self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One position: hidden (B, d_model) -> (out (B, d_model), conv state, SSM state), new tensors.

        The same arithmetic as ``forward`` at that position: the causal convolution reads the last
        ``d_conv`` inputs, then ``h = exp(dt A) h + dt B x``, ``y = <h, C> + D x``, ``y * silu(z)``.
        """
        dtype = ssm_state.dtype
        conv_w, conv_b, A, D, dt_bias = self._step_constants(dtype)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, d_inner) each
        conv_state = torch.cat([conv_state[..., 1:], x[..., None]], dim=-1)  # (B, d_inner, d_conv)
        x = (conv_state * conv_w).sum(-1)  # (B, d_inner)
        x = F.silu(x if conv_b is None else x + conv_b)

        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus((dt @ self.dt_proj.weight.T).to(dtype) + dt_bias)  # (B, d_inner)
        xs = x.to(dtype)
        ssm_state = torch.addcmul(
            torch.exp(dt[..., None] * A) * ssm_state, (dt * xs)[..., None], B.to(dtype)[:, None, :]
        )  # (B, d_inner, d_state)
        y = torch.addcmul((ssm_state @ C.to(dtype)[:, :, None]).squeeze(-1), D, xs)  # <h, C> + D x
        y = y * F.silu(z.to(dtype))
        return self.out_proj(y.to(hidden.dtype)), conv_state, ssm_state

    def _step_constants(self, dtype: torch.dtype):
        """Conv weight (d_inner, d_conv) and bias, A = -exp(A_log), D and the dt bias in the state dtype."""

        def build():
            bias = self.conv1d.bias
            return (self.conv1d.weight.squeeze(1), bias, -torch.exp(_at_least_fp32(self.A_log)).to(dtype),
                    _at_least_fp32(self.D).to(dtype), _at_least_fp32(self.dt_proj.bias).to(dtype))  # fmt: skip

        if not hasattr(self, "_derived"):
            self._derived = Derived()
        params = [self.conv1d.weight, self.A_log, self.D, self.dt_proj.bias]
        if self.conv1d.bias is not None:
            params.append(self.conv1d.bias)
        return self._derived.get(params, build, dtype)
