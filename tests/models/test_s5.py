"""Time-aware S5: HiPPO init, the scan, a float64 step-by-step reference, parity with s5-pytorch."""

import numpy as np
import pytest
import torch

from ss4rec.models.linear_scan import linear_scan
from ss4rec.models.s5 import S5, hippo_diagonal, hippo_legs

# ---------------------------------------------------------------------------------------------------------
# references written from the equations
# ---------------------------------------------------------------------------------------------------------


def scan_reference(a, b):
    """x_t = a_t x_{t-1} + b_t, one step at a time: (B, L, P) -> (B, L, P)."""
    x, out = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        x = a[:, t] * x + b[:, t]
        out.append(x)
    return torch.stack(out, 1)


def s5_reference(layer, u, dt):
    """S5 in complex128, one sequence and one step at a time: u (B, L, H), dt (B, L) -> (B, L, H)."""
    p = layer.seq
    Lambda, C = p.Lambda.to(torch.complex128), p.C.to(torch.complex128)
    if p.clip_eigs:  # JAX S5's bound: no real part above -1e-4
        Lambda = torch.complex(Lambda.real.clamp(max=-1e-4), Lambda.imag)
    B_tilde = torch.complex(p.B[..., 0].double(), p.B[..., 1].double())  # (P, H)
    outputs = []
    for b in range(u.shape[0]):
        x, rows = torch.zeros(Lambda.shape[0], dtype=torch.complex128), []
        for t in range(u.shape[1]):
            step = dt[b, t] * torch.exp(p.log_step.double())
            Lambda_bar = torch.exp(Lambda * step)
            B_bar = ((Lambda_bar - 1) / Lambda)[:, None] * B_tilde
            x = Lambda_bar * x + B_bar @ u[b, t].to(torch.complex128)
            rows.append((C @ x).real + p.D.double() * u[b, t])
        outputs.append(torch.stack(rows))
    return torch.stack(outputs)


def grads(output, weights, tensors):
    return torch.autograd.grad((output * weights).sum(), tensors, allow_unused=True)


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------


def test_hippo_diagonalises_the_normal_part():
    N = 8
    Lambda, V = hippo_diagonal(N)
    p = np.sqrt(np.arange(N) + 0.5)
    n = np.arange(N)
    legs = -np.where(n[:, None] > n[None, :], np.sqrt(np.outer(2 * n + 1, 2 * n + 1)), 0) - np.diag(n + 1)
    assert np.allclose(hippo_legs(N).numpy(), legs)
    normal = legs + np.outer(p, p)
    assert np.allclose((V @ torch.diag(Lambda) @ V.conj().T).numpy(), normal, atol=1e-10)
    assert np.allclose((V.conj().T @ V).numpy(), np.eye(N), atol=1e-10)
    eig = np.linalg.eigvals(normal)
    assert np.allclose(eig[np.argsort(eig.imag)], Lambda.numpy()[np.argsort(Lambda.numpy().imag)], atol=1e-8)
    assert torch.allclose(Lambda.real, torch.full((N,), -0.5, dtype=torch.float64))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("length", [1, 2, 13])
def test_linear_scan_matches_reference(parallel, length):
    g = torch.Generator().manual_seed(length)
    shape = (3, length, 5)
    a = torch.complex(
        torch.rand(shape, generator=g, dtype=torch.float64),
        torch.randn(shape, generator=g, dtype=torch.float64),
    )
    a = a / a.abs().clamp_min(1) * 0.99
    a[:, length // 2] = 0  # a state wiped out (huge gap)
    a[:, -1] = 1  # a zero gap: state carried
    b = torch.randn(shape, generator=g, dtype=torch.complex128)
    a.requires_grad_(), b.requires_grad_()
    out, ref = linear_scan(a, b, parallel), scan_reference(a, b)
    assert torch.allclose(out, ref, atol=1e-12)
    w = torch.randn(shape, generator=g, dtype=torch.complex128)
    for got, want in zip(
        grads(out.real + out.imag, w.real, (a, b)), grads(ref.real + ref.imag, w.real, (a, b))
    ):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, parallel), (a, b))


def random_gaps(batch, length, seed):
    """Gaps in seconds with zeros, small values and huge ones (1e7 s)."""
    g = torch.Generator().manual_seed(seed)
    gaps = torch.rand(batch, length, generator=g, dtype=torch.float64) * 30
    gaps[torch.rand(batch, length, generator=g) < 0.3] = 0.0
    gaps[:, 3] = 1e7
    return gaps


@pytest.mark.parametrize(
    "dtype,tol,parallel",
    [(torch.float64, 1e-9, False), (torch.float64, 1e-9, True), (torch.float32, 2e-4, None)],
)
def test_s5_matches_float64_reference(dtype, tol, parallel):
    torch.manual_seed(0)
    layer = S5(6, 4)
    u = torch.randn(2, 11, 6, dtype=torch.float64)
    dt = random_gaps(2, 11, seed=1)
    u_in, dt_in = u.to(dtype).requires_grad_(), dt.to(dtype).requires_grad_()
    out = layer(u_in, dt_in, parallel=parallel)
    ref = s5_reference(layer, u.requires_grad_(), dt.requires_grad_())
    assert out.dtype == dtype and not out.isnan().any()
    scale = ref.abs().max()
    assert torch.allclose(out.double(), ref, atol=tol * scale.item())
    w = torch.randn(ref.shape, dtype=torch.float64)
    params = list(layer.parameters())
    got = grads(out, w.to(dtype), [u_in, dt_in, *params])
    want = grads(ref, w, [u, dt, *params])
    names = ["u", "dt"] + [n for n, _ in layer.named_parameters()]
    for name, g_got, g_want in zip(names, got, want):
        assert g_got is not None and not g_got.isnan().any(), name
        g_scale = g_want.abs().max().clamp_min(1e-6)
        assert torch.allclose(g_got.to(g_want.dtype), g_want, atol=tol * 10 * g_scale.item()), name


def test_huge_gaps_erase_the_state_without_nan():
    torch.manual_seed(0)
    layer = S5(4, 6)
    u = torch.randn(1, 6, 4)
    dt = torch.full((1, 6), 1e9)
    out = layer(u.requires_grad_(), dt)
    out.sum().backward()
    assert all(not p.grad.isnan().any() and not p.grad.isinf().any() for p in layer.parameters())
    # memoryless: every output depends on its own input only
    alone = torch.cat([layer(u[:, t : t + 1], dt[:, t : t + 1]) for t in range(6)], 1)
    assert torch.allclose(out, alone, atol=1e-6)
    assert layer.seq.log_step.grad.abs().max() < 1e-6  # the official model's vanishing step gradient


def growing_layer(clip_eigs: bool) -> S5:
    """A layer whose second eigenvalue has a positive real part, as training left one (+7.8e-4, ML-1M)."""
    torch.manual_seed(0)
    layer = S5(6, 4, clip_eigs=clip_eigs)
    with torch.no_grad():
        layer.seq.Lambda[1] = torch.complex(torch.tensor(7.8e-4), layer.seq.Lambda[1].imag)
        layer.seq.log_step.fill_(np.log(0.1))
    return layer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_growing_eigenvalue_overflows_over_a_month_unless_clipped(dtype):
    u = torch.randn(2, 9, 6, dtype=dtype)
    dt = torch.full((2, 9), 2.7e6, dtype=dtype)  # a month: step 2.7e5, the state grows by exp(210) a step
    assert not torch.isfinite(growing_layer(clip_eigs=False)(u, dt)).all()  # s5-pytorch's and the official behaviour
    layer = growing_layer(clip_eigs=True)
    out = layer(u.requires_grad_(), dt)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(u.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert layer.seq.Lambda.grad[1].real == 0  # the clipped real part gets no gradient
    assert (layer.seq.Lambda.grad.imag != 0).all()


@pytest.mark.parametrize("parallel", [False, True])
def test_clipped_layer_matches_float64_reference(parallel):
    layer = growing_layer(clip_eigs=True)
    u = torch.randn(2, 11, 6, dtype=torch.float64, requires_grad=True)
    dt = random_gaps(2, 11, seed=2).requires_grad_()
    out, ref = layer(u, dt, parallel=parallel), s5_reference(layer, u, dt)
    assert torch.allclose(out, ref, atol=1e-9 * ref.abs().max().item())
    w = torch.randn(ref.shape, dtype=torch.float64)
    params = [u, dt, *layer.parameters()]
    names = ["u", "dt"] + [n for n, _ in layer.named_parameters()]
    for name, got, want in zip(names, grads(out, w, params), grads(ref, w, params)):
        assert torch.allclose(got, want, atol=1e-8 * want.abs().max().clamp_min(1e-6).item()), name


def test_clip_changes_nothing_below_the_bound():
    torch.manual_seed(0)
    free, clipped = S5(6, 4, clip_eigs=False), S5(6, 4)
    clipped.load_state_dict(free.state_dict())
    u, dt = torch.randn(2, 9, 6), random_gaps(2, 9, seed=3).float()
    assert torch.equal(free(u, dt), clipped(u, dt))


def test_steps_use_the_clipped_eigenvalues():
    layer = growing_layer(clip_eigs=True)
    u, dt = torch.randn(2, 7, 6, dtype=torch.float64), torch.full((2, 7), 2.7e6, dtype=torch.float64)
    state, outputs = layer.allocate_state(2, torch.float64), []
    for t in range(7):
        y, state = layer.step(u[:, t], dt[:, t], state)
        outputs.append(y)
    assert torch.isfinite(state).all()
    assert torch.allclose(torch.stack(outputs, 1), layer(u, dt), atol=1e-10)


def test_zero_gap_ignores_the_item_and_carries_the_state():
    torch.manual_seed(0)
    layer = S5(4, 6)
    u = torch.randn(1, 7, 4)
    dt = torch.rand(1, 7) + 0.5
    dt[0, 3] = 0
    base = layer(u, dt)
    changed = u.clone()
    changed[0, 3] += 5.0
    out = layer(changed, dt)
    D = layer.seq.D.detach()
    assert torch.allclose(out[0, 3] - base[0, 3], 5.0 * D, atol=1e-5)  # only the feed-through moves
    assert torch.allclose(out[0, 4:], base[0, 4:], atol=1e-5)
    assert torch.allclose(out[0, :3], base[0, :3])


def test_causal_and_right_padding_invariant():
    torch.manual_seed(0)
    layer = S5(5, 8)
    u, dt = torch.randn(2, 9, 5), torch.rand(2, 9) * 3
    base = layer(u, dt)
    later = u.clone()
    later[:, 5:] = torch.randn(2, 4)[..., None]
    dt_later = dt.clone()
    dt_later[:, 5:] = 100.0
    assert torch.allclose(layer(later, dt_later)[:, :5], base[:, :5])
    assert torch.allclose(layer(u[:, :5], dt[:, :5]), base[:, :5], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# parity with s5-pytorch (the package the official code uses)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["theirs_into_ours", "ours_into_theirs"])
def test_parity_with_s5_pytorch(direction):
    s5 = pytest.importorskip("s5")
    torch.manual_seed(0)
    theirs, ours = s5.S5(8, 6), S5(8, 6)
    assert {k: (v.shape, v.dtype) for k, v in theirs.state_dict().items()} == {
        k: (v.shape, v.dtype) for k, v in ours.state_dict().items()
    }
    if direction == "theirs_into_ours":
        ours.load_state_dict(theirs.state_dict())
    else:
        theirs.load_state_dict(ours.state_dict())
    u = torch.randn(3, 13, 8)
    per_position = torch.rand(3, 13) * 5
    per_position[:, 2] = 0.0
    for step_scale in (1.0, torch.tensor([0.5, 1.0, 2.0]), per_position):
        want = theirs(u, step_scale)
        got = ours(u, step_scale)
        assert torch.allclose(got, want, atol=2e-5 * want.abs().max().item()), step_scale
    # gradients agree too (per-position steps)
    w = torch.randn(3, 13, 8)
    g_theirs = grads(theirs(u, per_position), w, list(theirs.parameters()))
    g_ours = grads(ours(u, per_position), w, list(ours.parameters()))
    for a, b in zip(g_ours, g_theirs):
        assert torch.allclose(a, b, atol=1e-4 * b.abs().max().item())


def test_init_distribution_matches_s5_pytorch():
    s5 = pytest.importorskip("s5")
    torch.manual_seed(0)
    theirs, ours = s5.S5(64, 32), S5(64, 32)
    assert torch.allclose(ours.seq.Lambda, theirs.seq.Lambda)
    for name in ("B", "C"):
        a, b = getattr(ours.seq, name), getattr(theirs.seq, name)
        assert abs(a.abs().pow(2).mean().sqrt() / b.abs().pow(2).mean().sqrt() - 1) < 0.1, name
    assert ours.seq.log_step.min() >= np.log(0.001) and ours.seq.log_step.max() <= np.log(0.1)
