"""Loader of the compiled SS4Rec step (``ss4rec_step.c``): one ctypes call per step instead of ~100 PyTorch
operations. Built and cached like the training kernels (``ss4rec.kernels``: same compiler, flags, cache
folder and ``SS4REC_KERNELS`` switch, through ``ss4rec.kernels.build``) but as its own small library, so either can change alone.

``CompiledStep.build(model)`` lays an SS4Rec's float32 parameters out for the kernel, or returns None when
the library is unavailable or the model uses something the kernel does not (biases on the Mamba
projections, layers wider than ``MAX_WIDTH``, feed-forward blocks (``ffn``) wider than ``2 * MAX_WIDTH``);
``ss4rec.models.ss4rec_step.FrozenStep`` then keeps its PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import torch

from ss4rec import kernels

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("ss4rec_step.c")
ABI_VERSION = 2  # ST_ABI_VERSION in the C source
MAX_WIDTH = 1024  # ST_MAX_WIDTH: wider models keep the PyTorch step
_f = ctypes.POINTER(ctypes.c_float)


class Layer(ctypes.Structure):
    _fields_ = [*[(n, ctypes.c_int64) for n in ("P", "Di", "K", "R", "N")],
                *[(n, ctypes.c_void_p) for n in ("rate", "lre", "lim", "B_real", "C_real_T", "D", "W_in", "conv_w",
                                                  "conv_b", "W_x", "W_dt", "dt_bias", "A", "Dm", "W_out", "norm_w",
                                                  "norm_b")],
                ("eps", ctypes.c_float), ("F", ctypes.c_int64),
                *[(n, ctypes.c_void_p) for n in ("W1", "b1", "W2", "b2", "ff_norm_w", "ff_norm_b")],
                ("ff_eps", ctypes.c_float)]  # fmt: skip


class Model(ctypes.Structure):
    _fields_ = [("n_layers", ctypes.c_int64), ("H", ctypes.c_int64), ("emb", ctypes.c_void_p),
                ("remb", ctypes.c_void_p), *[(n, ctypes.c_int32) for n in ("use_time", "known", "floor_gap",
                                                                            "log1p_gap")],
                ("scale", ctypes.c_double), ("min_gap", ctypes.c_double), ("layers", ctypes.POINTER(Layer))]  # fmt: skip


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled step, built on first use; None (one warning) when unavailable or SS4REC_KERNELS=off."""
    if kernels.mode() == "off":
        return None
    try:
        lib = ctypes.CDLL(str(kernels.build(source=SOURCE, stem="libss4rec_step")))
        lib.ss4rec_step_abi_version.restype = ctypes.c_int
        if lib.ss4rec_step_abi_version() != ABI_VERSION:
            raise kernels.KernelError(f"step kernel ABI {lib.ss4rec_step_abi_version()}, expected {ABI_VERSION}")
        lib.ss4rec_step_f32.restype = ctypes.c_int
        lib.ss4rec_step_f32.argtypes = [ctypes.POINTER(Model), ctypes.c_int64, *[ctypes.c_void_p] * 6,
                                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        return lib
    except (kernels.KernelError, OSError) as e:
        if kernels.mode() == "require":
            raise kernels.KernelError(f"SS4REC_KERNELS=require, but {e}") from e
        log.warning("compiled SS4Rec step unavailable, using the PyTorch step (slower): %s", e)
        return None


class CompiledStep:
    """The kernel and the float32 tensors it reads (kept alive here)."""

    @classmethod
    @torch.no_grad()
    def build(cls, model) -> CompiledStep | None:
        lib = library()
        if lib is None or model.item_embedding.weight.device.type != "cpu":
            return None
        if model.hidden > MAX_WIDTH:
            return None
        for layer in model.layers:
            mb = layer.mamba
            if mb is not None and (mb.in_proj.bias is not None or mb.out_proj.bias is not None
                                   or max(mb.d_inner, mb.dt_rank + 2 * mb.d_state) > MAX_WIDTH):  # fmt: skip
                return None
            if layer.s5 is not None and layer.s5.state_width > MAX_WIDTH:
                return None
            if layer.feed_forward is not None and layer.feed_forward.w1.out_features > 2 * MAX_WIDTH:
                return None
        return cls(lib, model)

    def __init__(self, lib, model):
        from ss4rec.models.time_encoding import SECONDS_PER_UNIT

        self.lib, self.keep = lib, []
        f32 = torch.float32

        def ptr(t):
            if t is None:
                return None
            t = t.detach().to(f32).contiguous()
            self.keep.append(t)
            return t.data_ptr()

        layers = (Layer * len(model.layers))()
        for spec, layer in zip(layers, model.layers):
            spec.norm_w, spec.norm_b, spec.eps = ptr(layer.norm.weight), ptr(layer.norm.bias), layer.norm.eps
            if layer.s5 is not None:
                rate, Lambda, B_real, C_real_T, D = layer.s5._step_constants(f32, torch.complex64)
                spec.P = layer.s5.state_width
                spec.rate, spec.lre, spec.lim = ptr(rate), ptr(Lambda.real), ptr(Lambda.imag)
                spec.B_real, spec.C_real_T, spec.D = ptr(B_real), ptr(C_real_T), ptr(D)
            if layer.mamba is not None:
                mb = layer.mamba
                conv_w, conv_b, A, Dm, dt_bias = mb._step_constants(f32)
                spec.Di, spec.K, spec.R, spec.N = mb.d_inner, mb.d_conv, mb.dt_rank, mb.d_state
                spec.W_in, spec.conv_w, spec.conv_b = ptr(mb.in_proj.weight.T), ptr(conv_w), ptr(conv_b)
                spec.W_x, spec.W_dt, spec.dt_bias = ptr(mb.x_proj.weight.T), ptr(mb.dt_proj.weight.T), ptr(dt_bias)
                spec.A, spec.Dm, spec.W_out = ptr(A), ptr(Dm), ptr(mb.out_proj.weight.T)
            if layer.feed_forward is not None:  # model.ffn
                f = layer.feed_forward
                spec.F, spec.W1, spec.b1 = f.w1.out_features, ptr(f.w1.weight.T), ptr(f.w1.bias)
                spec.W2, spec.b2 = ptr(f.w2.weight.T), ptr(f.w2.bias)
                spec.ff_norm_w, spec.ff_norm_b, spec.ff_eps = ptr(f.norm.weight), ptr(f.norm.bias), f.norm.eps
        self.layers = layers
        scale = SECONDS_PER_UNIT[model.time_unit]
        self.spec = Model(n_layers=len(model.layers), H=model.hidden, emb=ptr(model.item_embedding.weight),
                          remb=ptr(None if model.rating_embedding is None else model.rating_embedding.weight),
                          use_time=int(model.use_time), known=int(model.target_time == "known"),
                          floor_gap=int(model.zero_gap == "floor"), log1p_gap=int(model.time_transform == "log1p"),
                          scale=scale, min_gap=model.min_gap_seconds / scale,
                          layers=ctypes.cast(layers, ctypes.POINTER(Layer)))  # fmt: skip
        self.ref = ctypes.byref(self.spec)
        self.n_layers = len(model.layers)

    def __call__(self, batch, items, ratings, times, next_times, prev_time, count, old, new, out) -> None:
        """Tensors, all contiguous on the CPU: items, times, next_times, prev_time, count int64 (B,); ratings
        float32 (B,); old/new 3 per layer (None for an absent block); out float32 (B, H)."""
        olds = (ctypes.c_void_p * len(old))(*[None if t is None else t.data_ptr() for t in old])
        news = (ctypes.c_void_p * len(new))(*[None if t is None else t.data_ptr() for t in new])
        code = self.lib.ss4rec_step_f32(self.ref, batch, items.data_ptr(), ratings.data_ptr(), times.data_ptr(),
                                        next_times.data_ptr(), prev_time.data_ptr(), count.data_ptr(), olds, news,
                                        out.data_ptr())  # fmt: skip
        if code != 0:
            raise ValueError(f"SS4Rec step kernel: a layer is wider than the kernel's buffers ({MAX_WIDTH})")
