"""The compiled CPU selective scan: against the float64 reference and the PyTorch scan (outputs and every
gradient), its dispatch, thread counts, and what happens when the library cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from scan_reference import random_inputs, scan_reference
from ss4rec import kernels
from ss4rec.kernels.scan import selective_scan_compiled
from ss4rec.models import selective_scan as ss

NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


@pytest.fixture(autouse=True)
def library():
    """The compiled library (CI sets SS4REC_KERNELS=require, so there a missing library fails, not skips)."""
    lib = kernels.library()
    if lib is None:
        pytest.skip("the compiled CPU kernels could not be built here (see the warning in the log)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield lib
    torch.set_num_threads(threads)


def grads(fn, inputs, weight, **flags):
    """Output and the gradients of <output, weight> with respect to every tensor input."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out = fn(**leaves, **flags)
    got = torch.autograd.grad((out * weight.to(out.dtype)).sum(), list(leaves.values()))
    return out, dict(zip(leaves, got))


def assert_close(got, want, tol, what):
    scale = want.abs().max().item() or 1.0
    err = (got.double() - want.double()).abs().max().item() / scale
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def check_against_float64(inputs, tol=1e-5, **flags):
    weight = torch.randn(inputs["u"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    want, want_grads = grads(scan_reference, inputs, weight, **flags)
    got, got_grads = grads(
        selective_scan_compiled, {k: v.float() for k, v in inputs.items()}, weight, **flags
    )
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert_close(got, want, tol, "output")
    assert set(got_grads) == set(want_grads)
    for name in want_grads:
        assert got_grads[name].shape == want_grads[name].shape, name
        assert_close(got_grads[name], want_grads[name], tol, f"d{name}")


@pytest.mark.parametrize(
    "batch,dim,length,d_state",
    [(1, 3, 1, 16), (3, 5, 13, 4), (2, 4, 17, 32), (1, 2, 9, 64), (2, 3, 40, 5), (2, 6, 201, 32)],
)
def test_matches_float64_reference(batch, dim, length, d_state):
    """Odd lengths, length 1, batch 1, the specialised state sizes (16, 32, 64) and generic ones (4, 5)."""
    check_against_float64(random_inputs(batch, dim, length, d_state, seed=length), delta_softplus=True)


@pytest.mark.parametrize("softplus", [False, True])
def test_growing_modes(softplus):
    """dt A > 0 somewhere (A > 0 in some states; without softplus also dt < 0): the kernel's general exp path,
    not the one for dt A <= 0 that Mamba always takes."""
    inputs = random_inputs(2, 5, 37, 32, seed=3)
    inputs["A"][:, ::5] = 0.3
    if not softplus:
        inputs.pop("delta_bias")
        inputs["delta"] = inputs["delta"] * 0.05  # of both signs, small enough not to overflow in 37 steps
    check_against_float64(inputs, delta_softplus=softplus)


def test_zero_and_huge_steps():
    """dt = 0 exactly (nothing enters, the state is kept) and dt huge (the state is wiped out)."""
    inputs = random_inputs(2, 4, 23, 16, seed=11)
    inputs.pop("delta_bias")
    delta = inputs["delta"].abs()
    delta[:, :, ::3] = 0.0
    delta[:, 1, 7] = 1e4
    delta[0, :, 12] = 1e30
    inputs["delta"] = delta
    check_against_float64(inputs, delta_softplus=False)
    inputs = random_inputs(2, 4, 23, 16, seed=12)
    inputs["delta"][:, :, 5] = 80.0  # softplus(80) = 80: a huge step
    inputs["delta"][:, :, 9] = -80.0  # softplus(-80) ~ 1e-35: no step at all
    check_against_float64(inputs, delta_softplus=True)


def test_without_optional_inputs():
    inputs = random_inputs(2, 3, 9, 6, seed=1)
    inputs["delta"] = inputs["delta"].abs()
    for drop in ("D", "z", "delta_bias"):
        inputs.pop(drop)
    check_against_float64(inputs, delta_softplus=False)


def test_padding_at_the_end_leaves_real_positions_alone():
    """Right padding (what the models feed): outputs before the padding do not depend on it, and with no
    gradient coming from padded outputs, padded inputs get exactly zero gradient."""
    inputs = {k: v.float() for k, v in random_inputs(3, 4, 15, 16, seed=5).items()}
    real = 10
    padded = {k: v.clone() for k, v in inputs.items()}
    for key in ("u", "delta", "z", "B", "C"):
        padded[key][..., real:] = torch.randn_like(padded[key][..., real:]) * 100
    weight = torch.randn(inputs["u"].shape)
    weight[..., real:] = 0.0
    out, g = grads(selective_scan_compiled, inputs, weight, delta_softplus=True)
    out_p, g_p = grads(selective_scan_compiled, padded, weight, delta_softplus=True)
    assert torch.equal(out[..., :real], out_p[..., :real])
    for key in ("u", "delta", "z", "B", "C"):
        assert torch.equal(g_p[key][..., real:], torch.zeros_like(g_p[key][..., real:])), key
        assert torch.allclose(g_p[key][..., :real], g[key][..., :real], rtol=1e-5, atol=1e-6), key
    for key in ("A", "D", "delta_bias"):
        assert torch.allclose(g_p[key], g[key], rtol=1e-5, atol=1e-6), key


def test_non_contiguous_inputs_and_gradients():
    """Strided views (as the Mamba block passes them) give the same bits as contiguous copies, including a
    zero-stride incoming gradient (from .sum())."""
    base = {k: v.float() for k, v in random_inputs(3, 8, 21, 16, seed=6).items()}
    views = dict(base)
    for key in ("u", "delta", "z"):  # (B, L, D) memory seen as (B, D, L)
        views[key] = base[key].transpose(1, 2).contiguous().transpose(1, 2)
    for key in ("B", "C"):  # columns of a wider (B, L, N + 5) tensor, seen as (B, N, L)
        wide = torch.randn(3, 21, 21)
        wide[..., 2:18] = base[key].transpose(1, 2)
        views[key] = wide[..., 2:18].transpose(1, 2)
    assert not any(views[k].is_contiguous() for k in ("u", "delta", "z", "B", "C"))
    contiguous = {k: v.clone().requires_grad_() for k, v in base.items()}
    strided = {k: v.clone().requires_grad_() if k not in ("u", "delta", "z", "B", "C") else v.requires_grad_()
               for k, v in views.items()}  # fmt: skip
    a = selective_scan_compiled(**contiguous, delta_softplus=True)
    b = selective_scan_compiled(**strided, delta_softplus=True)
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.sum(), list(contiguous.values()))
    gb = torch.autograd.grad(b.sum(), list(strided.values()))
    for name, x, y in zip(contiguous, ga, gb):
        assert torch.equal(x, y), name


def test_matches_pytorch_scan_at_mamba_shapes():
    """Against the PyTorch path it replaces, in float32, at SS4Rec's shapes (d_inner 128, d_state 32)."""
    inputs = {k: v.float() for k, v in random_inputs(4, 128, 50, 32, seed=7).items()}
    weight = torch.randn(inputs["u"].shape)
    want, want_grads = grads(ss.selective_scan_torch, inputs, weight, delta_softplus=True)
    got, got_grads = grads(selective_scan_compiled, inputs, weight, delta_softplus=True)
    assert_close(got, want, 1e-5, "output")
    for name in NAMES:
        assert_close(got_grads[name], want_grads[name], 1e-5, f"d{name}")


@pytest.mark.parametrize("batch", [1, 3])
def test_thread_counts_agree(batch):
    """Forward bit-equal for any thread count (each (batch, channel) pair is computed alone); gradients
    equal up to the order of the per-thread sums over the batch."""
    inputs = {k: v.float() for k, v in random_inputs(batch, 7, 33, 16, seed=8).items()}
    weight = torch.randn(inputs["u"].shape)
    results = {}
    for threads in (1, 2, 3, 8):
        torch.set_num_threads(threads)
        results[threads] = grads(selective_scan_compiled, inputs, weight, delta_softplus=True)
    out1, g1 = results[1]
    for threads, (out, g) in results.items():
        assert torch.equal(out, out1), threads
        for name in NAMES:
            assert torch.allclose(g[name], g1[name], rtol=1e-6, atol=1e-6), (threads, name)


def test_dispatch(monkeypatch):
    """selective_scan takes the compiled path for float32 and half precisions on CPU, the PyTorch path for
    float64; half inputs are computed in float32 and returned in their dtype."""
    calls = []
    real = ss.selective_scan_compiled
    monkeypatch.setattr(ss, "selective_scan_compiled", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs = random_inputs(2, 3, 7, 4, seed=3)
    ss.selective_scan(**inputs, delta_softplus=True)
    assert calls == []  # float64: the PyTorch scan, the float64 reference path
    ss.selective_scan(**{k: v.float() for k, v in inputs.items()}, delta_softplus=True)
    assert calls == [1]
    half = {k: v.to(torch.bfloat16) if k in ("u", "delta", "z", "B", "C") else v.float()
            for k, v in inputs.items()}  # fmt: skip
    out = ss.selective_scan(**half, delta_softplus=True)
    assert calls == [1, 1] and out.dtype == torch.bfloat16
    want = ss.selective_scan_torch(**half, delta_softplus=True)
    assert torch.allclose(out.float(), want.float(), rtol=1e-2, atol=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast never lowers the scan's own precision
        out = ss.selective_scan(**{k: v.float() for k, v in inputs.items()}, delta_softplus=True)
    assert out.dtype == torch.float32


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
    )


FALLBACK = """
    import logging, torch
    logging.basicConfig(level=logging.WARNING)
    from ss4rec import kernels
    from ss4rec.models import selective_scan as ss
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g), -torch.rand(3, 4, generator=g),
            torch.randn(2, 4, 7, generator=g), torch.randn(2, 4, 7, generator=g)]
    for _ in range(3):
        out = ss.selective_scan(*args, delta_softplus=True)
    assert kernels.library() is None
    assert torch.equal(out, ss.selective_scan_torch(*args, delta_softplus=True))
    print("fallback ok")
"""


def test_fallback_when_the_library_cannot_be_built(tmp_path):
    """No compiler: the PyTorch path runs, correct, and one warning says why."""
    result = run_python(FALLBACK, SS4REC_KERNEL_DIR=str(tmp_path / "empty"), CC="/nonexistent/cc",
                        PATH=str(tmp_path), SS4REC_KERNELS="auto")  # fmt: skip
    assert result.returncode == 0 and "fallback ok" in result.stdout, result.stderr
    assert result.stderr.count("compiled CPU kernels unavailable") == 1, result.stderr
    assert "no C compiler found" in result.stderr


def test_off_means_never_built(tmp_path):
    result = run_python(FALLBACK, SS4REC_KERNEL_DIR=str(tmp_path / "k"), SS4REC_KERNELS="off")
    assert result.returncode == 0 and "fallback ok" in result.stdout, result.stderr
    assert not (tmp_path / "k").exists()


def test_require_fails_loudly(tmp_path):
    code = "from ss4rec import kernels\nkernels.library()\n"
    result = run_python(code, SS4REC_KERNEL_DIR=str(tmp_path), CC="/nonexistent/cc", PATH=str(tmp_path),
                        SS4REC_KERNELS="require")  # fmt: skip
    assert result.returncode != 0 and "SS4REC_KERNELS=require" in result.stderr
    result = run_python(code, SS4REC_KERNELS="sometimes")
    assert result.returncode != 0 and "expected one of auto, off, require" in result.stderr


def test_loading_keeps_denormals():
    """Loading the library and running it must not switch the process to flush-to-zero (as a library
    linked with -ffast-math would), for torch or for anything else."""
    code = """
        import torch
        from ss4rec import kernels
        from ss4rec.kernels.scan import selective_scan_compiled

        def denormal_ok():  # 1e-40 is a float32 denormal; flush-to-zero would give 0 (one and two threads)
            small = torch.full((200_000,), 1e-30, dtype=torch.float32) * torch.tensor(1e-10)
            tiny = torch.tensor([1e-30], dtype=torch.float32) * torch.tensor([1e-10], dtype=torch.float32)
            return tiny.item() != 0.0 and bool((small != 0).all())

        assert denormal_ok()
        assert kernels.library() is not None
        torch.set_num_threads(2)
        x = torch.randn(2, 3, 5)
        selective_scan_compiled(x, x, -torch.rand(3, 4), torch.randn(2, 4, 5), torch.randn(2, 4, 5))
        assert denormal_ok()
        print("denormals ok")
    """
    result = run_python(code)
    assert result.returncode == 0 and "denormals ok" in result.stdout, result.stderr


def test_cache_key_follows_cpu_and_source(monkeypatch, tmp_path):
    """A library built for another CPU, or from another source, is never loaded: the key changes."""
    cc = kernels.compiler()
    monkeypatch.setenv("SS4REC_KERNEL_DIR", str(tmp_path))
    here = kernels.library_path(cc, kernels.CFLAGS)
    monkeypatch.setattr(kernels, "cpu_fingerprint", lambda: "x86_64\nflags: sse2")
    assert kernels.library_path(cc, kernels.CFLAGS) != here
    source = tmp_path / "copy.c"
    source.write_text(kernels.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(kernels, "SOURCE", source)
    monkeypatch.undo()
    monkeypatch.setenv("SS4REC_KERNEL_DIR", str(tmp_path))
    monkeypatch.setattr(kernels, "SOURCE", source)
    assert kernels.library_path(cc, kernels.CFLAGS) != here
