"""The compiled selective scan as an autograd function (float32, CPU); see ``selective_scan.c``.

Shapes as mamba_ssm's: u, delta, z (B, D, L) with any strides; A (D, N); B, C (B, N, L); D, delta_bias (D,).
softplus, ``delta_bias``, ``D`` and the ``z`` gate are fused into the kernel; the forward saves only its
inputs and the backward recomputes the states one (batch, channel) pair at a time.
"""

from __future__ import annotations

import ctypes

import torch

from ss4rec import kernels

_i64x3 = ctypes.c_int64 * 3
_ptr = ctypes.c_void_p


class ScanArgs(ctypes.Structure):
    """Mirror of ``ss_args`` in selective_scan.c (same field order and types)."""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("len", ctypes.c_int64),
        ("nstate", ctypes.c_int64),
        *[(name, _ptr) for name in ("u", "delta", "A", "B", "C", "D", "z", "bias")],
        ("su", _i64x3),
        ("sdelta", _i64x3),
        ("sz", _i64x3),
        ("softplus", ctypes.c_int32),
        ("nthreads", ctypes.c_int32),
        ("out", _ptr),
        ("gout", _ptr),
        ("sg", _i64x3),
        *[(name, _ptr) for name in ("du", "ddelta", "dz", "dA", "dB", "dC", "dD", "dbias")],
        *[(name, _i64x3) for name in ("so", "sdu", "sddelta", "sdz")],
    ]


def _ptr_of(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _strides(t: torch.Tensor | None):
    return _i64x3(*t.stride()) if t is not None else _i64x3(0, 0, 0)


def _inputs(u, delta, A, B_lt, C_lt, D, z, bias, softplus: bool) -> ScanArgs:
    """Arguments shared by forward and backward; B_lt, C_lt are (B, L, N) contiguous."""
    batch, dim, length = u.shape
    return ScanArgs(
        batch=batch,
        dim=dim,
        len=length,
        nstate=A.shape[1],
        u=_ptr_of(u),
        delta=_ptr_of(delta),
        A=_ptr_of(A),
        B=_ptr_of(B_lt),
        C=_ptr_of(C_lt),
        D=_ptr_of(D),
        z=_ptr_of(z),
        bias=_ptr_of(bias),
        su=_strides(u),
        sdelta=_strides(delta),
        sz=_strides(z),
        softplus=int(softplus),
        nthreads=torch.get_num_threads(),
    )


def _call(fn, args: ScanArgs) -> None:
    if fn(ctypes.byref(args)) < 0:
        raise MemoryError("the compiled selective scan could not allocate its scratch buffers")


class _CompiledScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus):
        lib = kernels.library()
        A, D, bias = A.contiguous(), _contig(D), _contig(bias)
        B_lt, C_lt = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (B, L, N)
        batch, dim, length = u.shape
        # (B, L, D) memory seen as (B, D, L): what out_proj reads next, so y.transpose(1, 2) needs no copy
        out = u.new_empty(batch, length, dim).transpose(1, 2)
        args = _inputs(u, delta, A, B_lt, C_lt, D, z, bias, softplus)
        args.out, args.so = out.data_ptr(), _strides(out)
        _call(lib.lib.ss4rec_scan_fwd, args)
        ctx.save_for_backward(u, delta, A, B_lt, C_lt, D, z, bias)
        ctx.softplus = softplus
        return out

    @staticmethod
    def backward(ctx, gout):
        u, delta, A, B_lt, C_lt, D, z, bias = ctx.saved_tensors
        lib = kernels.library()
        f32 = {"dtype": torch.float32}
        # each gradient in its input's memory order, as autograd's next step wants it: no transposing copy
        du, ddelta = _empty_in_order_of(u), _empty_in_order_of(delta)
        dz = _empty_in_order_of(z) if z is not None else None
        dB, dC = torch.zeros(B_lt.shape, **f32), torch.zeros(C_lt.shape, **f32)
        dA = torch.empty(A.shape, **f32)
        dD = torch.empty(D.shape, **f32) if D is not None else None
        dbias = torch.empty(bias.shape, **f32) if bias is not None else None
        gout = gout.float()
        args = _inputs(u, delta, A, B_lt, C_lt, D, z, bias, ctx.softplus)
        args.gout, args.sg = gout.data_ptr(), _strides(gout)
        for name, t in (("du", du), ("ddelta", ddelta), ("dz", dz), ("dA", dA), ("dB", dB), ("dC", dC),
                        ("dD", dD), ("dbias", dbias)):  # fmt: skip
            setattr(args, name, _ptr_of(t))
        args.sdu, args.sddelta, args.sdz = _strides(du), _strides(ddelta), _strides(dz)
        _call(lib.lib.ss4rec_scan_bwd, args)
        return du, ddelta, dA, dB.transpose(1, 2), dC.transpose(1, 2), dD, dz, dbias, None


def _empty_in_order_of(t: torch.Tensor) -> torch.Tensor:
    """A dense float32 tensor shaped like ``t`` whose dimensions lie in memory in ``t``'s order. (empty_like
    does this only for dense ``t``; a view such as z, half of in_proj's (B, L, 2 d_inner) output seen as
    (B, d_inner, L), would get (B, d_inner, L) memory and a transposing copy downstream.)"""
    order = sorted(range(t.dim()), key=lambda i: -t.stride(i))  # outermost dimension first
    buffer = torch.empty([t.shape[i] for i in order], dtype=torch.float32)
    return buffer.permute(*[order.index(i) for i in range(t.dim())])


def _contig(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def supports(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, *others) -> bool:
    """Whether the compiled scan takes these inputs: CPU, real A (D, N), input-dependent B, C (B, N, L), and
    nothing in float64 (float64 runs the PyTorch scan, which is the float64 reference in tests)."""
    tensors = [u, A, B, C, *[t for t in others if t is not None]]
    return (
        u.device.type == "cpu"
        and u.dim() == 3
        and A.dim() == 2
        and not A.is_complex()
        and B.dim() == 3
        and C.dim() == 3
        and all(
            t.device.type == "cpu" and t.dtype != torch.float64 and t.is_floating_point() for t in tensors
        )
        and u.shape[0] * u.shape[1] * u.shape[2] > 0
    )


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The compiled scan, computed in float32 (under autocast too) and returned in ``u``'s dtype."""
    with torch.autocast("cpu", enabled=False):
        f = lambda t: None if t is None else t.float()  # noqa: E731 - a no-op for float32 inputs
        out = _CompiledScan.apply(
            f(u), f(delta), f(A), f(B), f(C), f(D), f(z), f(delta_bias), bool(delta_softplus)
        )
    return out.to(u.dtype)
