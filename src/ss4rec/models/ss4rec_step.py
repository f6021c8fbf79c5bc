"""SS4Rec's recurrent step for serving: the same arithmetic as ``SS4Rec.step`` in far fewer operations.

At batch 1 a step is a few hundred tiny PyTorch operations and their dispatch, not arithmetic, is its cost.
``FrozenStep`` takes the parameters as they are when it is built (eval mode, no gradients: serving) and

* derives once what does not depend on the input: ``exp(log_step)``, S5's ``Lambda`` and real-valued
  ``B``/``C`` layouts, Mamba's ``A = -exp(A_log)``, transposed projection weights, the conv weight;
* discretises the S5 layers of every layer in one pass (the gap is shared; every element sees the same
  operations as in ``S5.step``, so the values are the same);
* calls ``mm``/``bmm`` directly, updates freshly made tensors in place, and skips dtype casts that do
  nothing, dropout, and the per-layer dict bookkeeping of ``SS4Rec.step``.

It computes what ``SS4Rec.step`` computes (same formulas, same order of operations), so the states it
returns equal ``encode_sequence``'s to rounding (tests/models/test_step.py checks both in float64 to 1e-10).
The parameters must not change while it is used: the serving core builds one after loading the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ss4rec.batch import Batch
from ss4rec.models.base import State
from ss4rec.models.linear_scan import _discretize


class FrozenStep:
    """``step(state, event) -> (hidden (B, D), new state)``, as ``SS4Rec.step``, for a frozen SS4Rec."""

    def __init__(self, model, compiled: bool = True):
        if getattr(model, "rating_profile", None) is not None or getattr(model, "residual_input", None) is not None:
            raise ValueError("FrozenStep does not cover rating_profile or rating_base_residuals; step such a model with "
                             "model.step (model.frozen_step() returns it)")  # fmt: skip
        self.model = model
        self._constants: dict[torch.dtype, tuple] = {}
        self.n_layers = len(model.layers)
        self.has_s5 = model.layers[0].s5 is not None
        self.has_mamba = model.layers[0].mamba is not None
        self.keys = [(f"layers.{i}.s5", f"layers.{i}.conv", f"layers.{i}.ssm") for i in range(self.n_layers)]
        # the compiled float32 kernel (ss4rec.kernels.step): None until first used, False when unavailable
        self.compiled = False if not compiled else None
        self.names = [k for trio in self.keys for k in trio]

    def prepare(self, dtype: torch.dtype = torch.float32) -> FrozenStep:
        """Derive the constants (and build or load the compiled kernel for float32) now rather than at the
        first step: a server does this at start-up, not in its first request."""
        if dtype not in self._constants:
            self._constants[dtype] = self._build(dtype)
        if dtype == torch.float32 and self.compiled is None:
            from ss4rec.kernels.step import CompiledStep

            self.compiled = CompiledStep.build(self.model) or False
        return self

    def _compiled_step(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        items = event["items"].contiguous()
        B = items.shape[0]
        old = [state[name].contiguous() if name in state else None for name in self.names]
        new_tensors = [None if t is None else torch.empty_like(t) for t in old]
        out = torch.empty(B, self.model.hidden)
        self.compiled(B, items, event["ratings"].to(torch.float32).contiguous(), event["times"].contiguous(),
                      event["next_times"].contiguous(), state["prev_time"].contiguous(), state["count"].contiguous(),
                      old, new_tensors, out)  # fmt: skip
        new: State = {"prev_time": event["times"].clone(), "count": state["count"] + 1}
        for name, t in zip(self.names, new_tensors):
            if t is not None:
                new[name] = t
        return out, new

    # ---- constants ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _build(self, dtype: torch.dtype) -> tuple:
        m = self.model
        complex_dtype = torch.promote_types(dtype, torch.complex64)
        rates, lambdas, layers = [], [], []
        for layer in m.layers:
            s5 = mamba = None
            norm = _layer_norm_args(layer.norm, dtype)
            if layer.s5 is not None:
                rate, Lambda, B_real, C_real_T, D = layer.s5._step_constants(dtype, complex_dtype)
                rates.append(rate), lambdas.append(Lambda)
                s5 = (B_real.contiguous(), C_real_T.contiguous(), D)
            if layer.mamba is not None:
                mb = layer.mamba
                conv_w, conv_b, A, Dm, dt_bias = mb._step_constants(dtype)
                in_b = None if mb.in_proj.bias is None else mb.in_proj.bias.to(dtype)
                out_b = None if mb.out_proj.bias is None else mb.out_proj.bias.to(dtype)
                mamba = (mb.in_proj.weight.to(dtype).T.contiguous(), in_b, mb.d_inner, conv_w.to(dtype), conv_b,
                         mb.x_proj.weight.to(dtype).T.contiguous(), mb.dt_rank, mb.d_state,
                         mb.dt_proj.weight.to(dtype).T.contiguous(), dt_bias, A, Dm,
                         mb.out_proj.weight.to(dtype).T.contiguous(), out_b)  # fmt: skip
            ffn = None
            if layer.feed_forward is not None:
                f = layer.feed_forward
                ffn = (f.w1.weight.to(dtype).T.contiguous(), f.w1.bias.to(dtype), f.w2.weight.to(dtype).T.contiguous(),
                       f.w2.bias.to(dtype), _layer_norm_args(f.norm, dtype))  # fmt: skip
            layers.append((s5, mamba, norm, ffn))
        rate = torch.cat(rates) if rates else None
        Lambda = torch.cat(lambdas) if lambdas else None
        emb = m.item_embedding.weight.to(dtype)
        remb = None if m.rating_embedding is None else m.rating_embedding.weight.to(dtype)
        return rate, Lambda, layers, emb, remb

    # ---- the step -------------------------------------------------------------------------------------
    def __call__(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        keys = self.keys[0]
        dtype = state[keys[2]].dtype if self.has_mamba else state[keys[0]].real.dtype
        if dtype == torch.float32 and self.compiled is not False:
            if self.compiled is None:
                self.prepare(dtype)
            if self.compiled is not False:
                return self._compiled_step(state, event)
        constants = self._constants.get(dtype)
        if constants is None:
            constants = self._constants[dtype] = self._build(dtype)
        rate, Lambda, layers, emb, remb = constants
        dt = self.model.step_scale(state, event)  # (B,)
        x = F.embedding(event["items"], emb)  # (B, D)
        if remb is not None:
            buckets = torch.round(event["ratings"] * 2).long().clamp_(0, 10)
            x = x + F.embedding(buckets, remb)
        Bsz = x.shape[0]
        new: State = {"prev_time": event["times"].clone(), "count": state["count"] + 1}
        if rate is not None:  # every layer's S5 discretisation at once: (B, n_layers * P)
            Lambda_bar, zoh = _discretize(Lambda, dt.to(dtype)[:, None] * rate)
            P = Lambda.shape[0] // self.n_layers
        for i, (s5, mamba, norm, ffn) in enumerate(layers):
            k_s5, k_conv, k_ssm = self.keys[i]
            if s5 is not None:
                B_real, C_real_T, D = s5
                Bu = torch.view_as_complex(torch.mm(x, B_real).view(Bsz, -1, 2))  # B_tilde u, (B, P)
                s = Lambda_bar[:, i * P : (i + 1) * P] * state[k_s5]
                s += zoh[:, i * P : (i + 1) * P] * Bu
                new[k_s5] = s
                y = torch.addcmul(torch.mm(torch.view_as_real(s).view(Bsz, -1), C_real_T), D, x)
                x = F.layer_norm(x + y, *norm)
            if mamba is not None:
                (W_in, b_in, d_inner, conv_w, conv_b, W_x, r, N, W_dt, dt_bias, A, Dm, W_out, b_out) = mamba
                xz = torch.mm(x, W_in) if b_in is None else torch.addmm(b_in, x, W_in)
                xi, z = xz[:, :d_inner], xz[:, d_inner:]
                conv = torch.cat([state[k_conv][..., 1:], xi[..., None]], dim=-1)  # (B, d_inner, d_conv)
                new[k_conv] = conv
                xc = (conv * conv_w).sum(-1)
                if conv_b is not None:
                    xc += conv_b
                xc = F.silu(xc)
                x_dbl = torch.mm(xc, W_x)
                delta = F.softplus(torch.mm(x_dbl[:, :r], W_dt) + dt_bias)  # (B, d_inner)
                h = torch.mul(delta[..., None], A).exp_().mul_(state[k_ssm])
                h.addcmul_((delta * xc)[..., None], x_dbl[:, None, r : r + N])  # (B, d_inner, N)
                new[k_ssm] = h
                y = torch.addcmul(torch.bmm(h, x_dbl[:, r + N :, None]).view(Bsz, d_inner), Dm, xc)
                y *= F.silu(z)
                out = torch.mm(y, W_out) if b_out is None else torch.addmm(b_out, y, W_out)
                x = F.layer_norm(x + out, *norm)
            if ffn is not None:  # the feed-forward block (model.ffn), exact GELU as nn.GELU
                W1, b1, W2, b2, fnorm = ffn
                h = torch.addmm(b2, F.gelu(torch.addmm(b1, x, W1)), W2)
                x = F.layer_norm(x + h, *fnorm)
        return x, new


def _layer_norm_args(norm: torch.nn.LayerNorm, dtype: torch.dtype) -> tuple:
    """``F.layer_norm``'s arguments after the input, for ``norm`` in ``dtype``: shape, weight, bias, eps."""
    return norm.normalized_shape, norm.weight.to(dtype), norm.bias.to(dtype), norm.eps
