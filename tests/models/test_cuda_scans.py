"""Our scans on CUDA against the CPU path, outputs and gradients (a GPU only; `make gpu-check` runs these).

* the S5 scan (``zoh_scan``, ``linear_scan``): the parallel (Hillis-Steele) kernel that runs on CUDA against
  the CPU loop;
* the selective scan: the pure-PyTorch chunked scan on CUDA, and ``selective_scan`` on CUDA (mamba_ssm's
  fused kernel when it imports, else the same PyTorch scan), against the PyTorch scan on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from scan_reference import random_inputs
from ss4rec.models import selective_scan as ss
from ss4rec.models.linear_scan import linear_scan, zoh_scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _outputs_and_grads(fn, inputs: dict[str, torch.Tensor], device: str, seed: int = 0):
    """fn(**inputs) on ``device`` and the gradients of a fixed random projection of it, all back on the CPU."""
    leaves = {k: v.detach().to(device).requires_grad_(v.is_floating_point() or v.is_complex())
              for k, v in inputs.items()}
    out = fn(**leaves)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(device)
    differentiable = [k for k, v in leaves.items() if v.requires_grad]
    grads = torch.autograd.grad((out * w).real.sum(), [leaves[k] for k in differentiable])
    return out.detach().cpu(), {k: g.cpu() for k, g in zip(differentiable, grads)}


def _assert_close(got, want, rtol, atol):
    out_got, grads_got = got
    out_want, grads_want = want
    scale = out_want.abs().max().item()
    assert torch.allclose(out_got, out_want, rtol=rtol, atol=atol * scale), "output"
    for name, grad in grads_want.items():
        g_scale = grad.abs().max().item()
        assert torch.allclose(grads_got[name], grad, rtol=rtol, atol=atol * g_scale), name


@pytest.mark.parametrize("length", [1, 37, 200])
def test_linear_scan_parallel_on_cuda_matches_cpu_loop(length):
    g = torch.Generator().manual_seed(length)
    shape = (4, length, 16)
    a = torch.polar(torch.rand(shape, generator=g), torch.rand(shape, generator=g) * 6.28)
    b = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    cpu = _outputs_and_grads(lambda a, b: linear_scan(a, b, parallel=False), {"a": a, "b": b}, "cpu")
    gpu = _outputs_and_grads(lambda a, b: linear_scan(a, b), {"a": a, "b": b}, "cuda")
    _assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length", [1, 37, 200])
def test_zoh_scan_on_cuda_matches_cpu(length):
    g = torch.Generator().manual_seed(length)
    P = 16
    Lambda = torch.complex(-torch.rand(P, generator=g) - 0.1, torch.randn(P, generator=g))
    step = torch.rand(3, length, P, generator=g) * (torch.rand(3, length, 1, generator=g) > 0.3)  # zero gaps
    Bu = torch.complex(torch.randn(3, length, P, generator=g), torch.randn(3, length, P, generator=g))
    inputs = {"Lambda": Lambda, "step": step, "Bu": Bu}
    cpu = _outputs_and_grads(lambda **k: zoh_scan(**k, parallel=False), inputs, "cpu")
    gpu = _outputs_and_grads(lambda **k: zoh_scan(**k), inputs, "cuda")
    _assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scan", ["torch", "dispatch"])
@pytest.mark.parametrize("length", [1, 50, 200])
def test_selective_scan_on_cuda_matches_cpu(scan, length):
    inputs = random_inputs(2, 24, length, 16, seed=length, dtype=torch.float32)
    cpu = _outputs_and_grads(lambda **k: ss.selective_scan_torch(**k, delta_softplus=True), inputs, "cpu")
    fn = ss.selective_scan_torch if scan == "torch" else ss.selective_scan
    gpu = _outputs_and_grads(lambda **k: fn(**k, delta_softplus=True), inputs, "cuda")
    _assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)
