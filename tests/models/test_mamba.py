"""Mamba block: mamba_ssm's parameter layout and init, a float64 recurrent reference, causality, parity with mamba_ssm."""

import math

import pytest
import torch
import torch.nn.functional as F

from gradients import mismatches
from mamba_reference import reference_mamba
from ss4rec.models.mamba import Mamba, causal_conv1d


def expected_shapes(d_model, d_state, d_conv, expand):
    """Parameter shapes of mamba_ssm's Mamba (mamba_simple.py) with its defaults (bias=False, conv_bias=True)."""
    d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
    return {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


def recurrent_reference(block, hidden):
    """The block one token at a time, as an RNN with a conv window and an SSM state: (B, L, d) -> (B, L, d)."""
    W = dict(block.named_parameters())
    d_inner, K, N, R = block.d_inner, block.d_conv, block.d_state, block.dt_rank
    A = -torch.exp(W["A_log"])
    batch, length, _ = hidden.shape
    window = hidden.new_zeros(batch, d_inner, K)  # last K conv inputs, oldest first
    state = hidden.new_zeros(batch, d_inner, N)
    outputs = []
    for t in range(length):
        xz = hidden[:, t] @ W["in_proj.weight"].T
        x, z = xz[:, :d_inner], xz[:, d_inner:]
        window = torch.cat([window[:, :, 1:], x[:, :, None]], dim=2)
        x = F.silu((window * W["conv1d.weight"][:, 0]).sum(-1) + W["conv1d.bias"])
        x_dbl = x @ W["x_proj.weight"].T
        dt, B, C = x_dbl[:, :R], x_dbl[:, R : R + N], x_dbl[:, R + N :]
        dt = F.softplus(dt @ W["dt_proj.weight"].T + W["dt_proj.bias"])  # (B, d_inner)
        state = torch.exp(dt[..., None] * A) * state + (dt * x)[..., None] * B[:, None, :]
        y = (state * C[:, None, :]).sum(-1) + W["D"] * x
        y = y * F.silu(z)
        outputs.append(y @ W["out_proj.weight"].T)
    return torch.stack(outputs, 1)


def test_parameter_names_shapes_and_init():
    block = Mamba(40, d_state=8, d_conv=3, expand=2)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == expected_shapes(40, 8, 3, 2)
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert torch.allclose(block.A_log, torch.log(torch.arange(1, 9.0)).expand(80, 8))
    assert torch.equal(block.D, torch.ones(80))
    assert block.A_log._no_weight_decay and block.D._no_weight_decay


def test_causal_conv1d_matches_a_loop():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 7), torch.randn(3, 1, 4), torch.randn(3)
    padded = F.pad(x, (3, 0))
    want = torch.stack([(padded[:, :, t : t + 4] * w[:, 0]).sum(-1) + b for t in range(7)], -1)
    assert torch.allclose(causal_conv1d(x, w, b), F.silu(want), atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_cpu_causal_conv_gradients(bias):
    """The CPU convolution (time-major, own backward) on a strided view, with and without bias."""
    torch.manual_seed(1)
    xz = torch.randn(2, 6, 8, dtype=torch.float64)  # (B, L, 2D): x is half of it, seen as (B, D, L)
    x = xz[..., :4].transpose(1, 2).requires_grad_()
    w = torch.randn(4, 1, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
    torch.autograd.gradcheck(lambda *a: causal_conv1d(*a), (x, w, b))
    want = F.conv1d(x, w, b, padding=2, groups=4)[..., :6]
    assert torch.allclose(causal_conv1d(x, w, b), F.silu(want), atol=1e-12)


@pytest.mark.parametrize("length", [1, 5, 13])
def test_matches_recurrent_reference_in_float64(length):
    torch.manual_seed(length)
    block = Mamba(16, d_state=4, d_conv=4, expand=2).double()
    with torch.no_grad():
        for p in block.parameters():  # move away from the init so every path carries signal
            p.add_(0.1 * torch.randn_like(p))
    hidden = torch.randn(3, length, 16, dtype=torch.float64, requires_grad=True)
    out = block(hidden)
    ref = recurrent_reference(block, hidden)
    assert torch.allclose(out, ref, atol=1e-10)
    w = torch.randn_like(ref)
    tensors = [hidden, *block.parameters()]
    got = torch.autograd.grad((out * w).sum(), tensors)
    want = torch.autograd.grad((ref * w).sum(), tensors)
    for name, a, b in zip(["hidden"] + [n for n, _ in block.named_parameters()], got, want):
        assert torch.allclose(a, b, atol=1e-9), name


def test_causal():
    torch.manual_seed(0)
    block = Mamba(16, d_state=8)
    hidden = torch.randn(2, 12, 16)
    base = block(hidden)
    changed = hidden.clone()
    changed[:, 7:] = torch.randn(2, 5, 16)
    out = block(changed)
    assert torch.allclose(out[:, :7], base[:, :7], atol=1e-6)
    assert not torch.allclose(out[:, 7:], base[:, 7:], atol=1e-6)


def test_same_init_as_mamba_ssm(mamba_ssm, monkeypatch):
    """Same seed, same parameters: mamba_ssm's Mamba and ours draw the same numbers in the same order."""
    torch.manual_seed(3)
    theirs = reference_mamba(*mamba_ssm, monkeypatch, 40, d_state=8, d_conv=3, expand=2)
    torch.manual_seed(3)
    ours = Mamba(40, d_state=8, d_conv=3, expand=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


@pytest.mark.parametrize("scan", ["compiled", "pytorch"])
@pytest.mark.parametrize("length", [1, 17])
def test_parity_with_mamba_ssm(mamba_ssm, monkeypatch, length, scan):
    """Outputs and every gradient equal mamba_ssm's Mamba (its pure-PyTorch path) on the same weights, with
    our compiled CPU scan and with our PyTorch scan."""
    from ss4rec import kernels
    from ss4rec.models import selective_scan

    if scan == "pytorch":
        monkeypatch.setattr(kernels, "library", lambda: None)
    elif kernels.library() is None:
        pytest.skip("the compiled CPU kernels could not be built here")
    calls = []
    real = selective_scan.selective_scan_compiled
    monkeypatch.setattr(selective_scan, "selective_scan_compiled", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(length)
    theirs = reference_mamba(*mamba_ssm, monkeypatch, 32, d_state=16)
    ours = Mamba(32, d_state=16)
    ours.load_state_dict(theirs.state_dict())  # strict: their checkpoints load here ...
    with torch.no_grad():
        for p in ours.parameters():  # away from the init so every path carries signal
            p.add_(0.1 * torch.randn_like(p))
    theirs.load_state_dict(ours.state_dict())  # ... and ours load there
    hidden = torch.randn(3, length, 32, requires_grad=True)
    got, want = ours(hidden), theirs(hidden)
    assert torch.allclose(got, want, atol=1e-5)
    w = torch.randn_like(want)
    grads_ours = torch.autograd.grad((got * w).sum(), [hidden, *ours.parameters()])
    grads_theirs = torch.autograd.grad((want * w).sum(), [hidden, *theirs.parameters()])
    names = ["hidden"] + [n for n, _ in ours.named_parameters()]
    assert names[1:] == [n for n, _ in theirs.named_parameters()]
    for name, a, b in zip(names, grads_ours, grads_theirs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name
    assert bool(calls) == (scan == "compiled")


def output_and_gradients(block, hidden, weights):
    """Output of ``block`` and the gradients of ``(output * weights).sum()`` for the input and every parameter."""
    hidden = hidden.clone().requires_grad_(True)
    out = block(hidden)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, *block.parameters()])
    names = ["input", *(n for n, _ in block.named_parameters())]
    return out.detach().cpu(), {n: g.cpu() for n, g in zip(names, grads)}


def test_cuda_kernels_match_cpu_when_installed():
    """mamba_ssm's fused CUDA path (forward and backward) against our CPU path on the same weights, each
    gradient to its own size (a GPU with mamba_ssm only)."""
    mamba_simple = pytest.importorskip("mamba_ssm.modules.mamba_simple")
    if not torch.cuda.is_available():
        pytest.skip("mamba_ssm's fused kernels run on CUDA only")
    torch.manual_seed(0)
    theirs = mamba_simple.Mamba(32, d_state=16).cuda()
    ours_cpu = Mamba(32, d_state=16)
    ours_cpu.load_state_dict({k: v.cpu() for k, v in theirs.state_dict().items()})
    with torch.no_grad():  # off the init (zero dt_proj bias, tiny dt_proj and A_log gradients)
        for p in ours_cpu.parameters():
            p.add_(0.1 * torch.randn_like(p))
    theirs.load_state_dict({k: v.cuda() for k, v in ours_cpu.state_dict().items()})
    ours_gpu = Mamba(32, d_state=16).cuda()
    ours_gpu.load_state_dict(theirs.state_dict())
    hidden, weights = torch.randn(2, 17, 32), torch.randn(2, 17, 32)
    want_out, want_grads = output_and_gradients(ours_cpu, hidden, weights)
    assert len(want_grads) == 1 + len(expected_shapes(32, 16, 4, 2))
    for who, block in (("mamba_ssm", theirs), ("ours on their kernels", ours_gpu)):
        out, grads = output_and_gradients(block, hidden.cuda(), weights.cuda())
        assert mismatches({"output": out}, {"output": want_out}, rtol=1e-4) == {}, who
        assert mismatches(grads, want_grads, rtol=1e-3) == {}, who
