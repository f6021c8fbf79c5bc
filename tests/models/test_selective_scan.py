"""Selective scan (S6): the chunked PyTorch scan against a float64 step-by-step reference."""

import subprocess
import sys
import textwrap

import pytest
import torch

from scan_reference import random_inputs, scan_reference
from ss4rec.models import selective_scan as ss


def check_against_reference(inputs, atol, chunk=None, **flags):
    names = list(inputs)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref_leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out = ss.selective_scan_torch(**leaves, chunk=chunk, **flags)
    ref = scan_reference(**ref_leaves, **flags)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.allclose(out, ref, atol=atol * ref.abs().max().item())
    w = torch.randn_like(ref)
    got = torch.autograd.grad((out * w).sum(), [leaves[k] for k in names])
    want = torch.autograd.grad((ref * w).sum(), [ref_leaves[k] for k in names])
    for name, a, b in zip(names, got, want):
        assert torch.allclose(a, b, atol=atol * b.abs().max().item()), name


@pytest.mark.parametrize("length,chunk", [(1, None), (13, 1), (13, 4), (13, 13), (13, None), (20, 7)])
def test_matches_reference_all_inputs(length, chunk):
    check_against_reference(random_inputs(3, 5, length, 4, seed=length), 1e-10, chunk, delta_softplus=True)


def test_matches_reference_without_optional_inputs():
    inputs = random_inputs(2, 3, 9, 6, seed=1)
    inputs["delta"] = inputs["delta"].abs()  # raw positive steps, no softplus
    for drop in ("D", "z", "delta_bias"):
        inputs.pop(drop)
    check_against_reference(inputs, 1e-10, chunk=4, delta_softplus=False)


def test_float32_close_to_float64_and_large_steps():
    inputs = random_inputs(2, 4, 17, 8, seed=2)
    inputs["delta"][:, :, 5] = 40.0  # a huge step: the state is wiped out
    want = scan_reference(**inputs, delta_softplus=True)
    got = ss.selective_scan_torch(**{k: v.float() for k, v in inputs.items()}, delta_softplus=True, chunk=5)
    assert got.dtype == torch.float32 and not got.isnan().any()
    assert torch.allclose(got.double(), want, atol=1e-5 * want.abs().max().item())


def test_gradcheck():
    inputs = random_inputs(1, 2, 5, 3, seed=3)
    leaves = [v.requires_grad_() for v in inputs.values()]

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return ss.selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, chunk=2)

    assert torch.autograd.gradcheck(fn, leaves)


def test_causal():
    inputs = random_inputs(2, 3, 10, 4, seed=4)
    base = ss.selective_scan(**inputs, delta_softplus=True)
    for key in ("u", "delta", "B", "C", "z"):
        changed = dict(inputs)
        changed[key] = inputs[key].clone()
        changed[key][..., 6:] += 1.0
        out = ss.selective_scan(**changed, delta_softplus=True)
        assert torch.allclose(out[..., :6], base[..., :6]), key
        assert not torch.allclose(out[..., 6:], base[..., 6:]), key


@pytest.mark.parametrize("length", [1, 11])
def test_matches_mamba_ssm_reference(mamba_ssm, length):
    """Ours against mamba_ssm's own ``selective_scan_ref`` (it computes in float32): outputs and gradients."""
    interface = mamba_ssm[1]
    inputs = {k: v.requires_grad_() for k, v in random_inputs(2, 4, length, 3, 5, torch.float32).items()}
    want = interface.selective_scan_ref(**inputs, delta_softplus=True)
    got = ss.selective_scan_torch(**inputs, delta_softplus=True)
    assert torch.allclose(got, want, atol=1e-5)
    w = torch.randn_like(want)
    for name, a, b in zip(
        inputs,
        torch.autograd.grad((got * w).sum(), list(inputs.values())),
        torch.autograd.grad((want * w).sum(), list(inputs.values())),
    ):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("how", ["missing", "broken"])
def test_import_without_mamba_ssm(tmp_path, how):
    """A missing mamba_ssm / causal_conv1d, or one whose import raises (a bad .so), must not break import."""
    if how == "broken":
        for name in ("mamba_ssm", "causal_conv1d"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "__init__.py").write_text(
                "raise OSError('undefined symbol in selective_scan_cuda.so')\n"
            )
        setup = f"sys.path.insert(0, {str(tmp_path)!r})"
    else:
        setup = "sys.modules['mamba_ssm'] = None; sys.modules['causal_conv1d'] = None"
    code = textwrap.dedent(f"""
        import sys
        {setup}
        import torch
        from ss4rec.models import mamba, selective_scan
        from ss4rec.models.ss4rec import SS4Rec
        assert selective_scan._cuda_selective_scan is None and mamba._cuda_causal_conv1d is None
        out = mamba.Mamba(8, d_state=4)(torch.randn(2, 5, 8))
        assert out.shape == (2, 5, 8)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
