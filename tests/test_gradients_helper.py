"""The per-tensor relative comparison the CUDA-vs-CPU tests rely on (tests/gradients.py), on CPU tensors."""

from __future__ import annotations

import math

import torch

from gradients import mismatches, relative_error


def test_zero_gradients_for_tiny_tensors_are_caught():
    """A GPU returning zeros for ~1e-11 gradients (dt_proj, A_log at init) passes an absolute 1e-5."""
    torch.manual_seed(0)
    expected = {"big": torch.randn(4, 3), "dt_proj.weight": 1e-11 * torch.randn(8, 2), "A_log": 3e-10 * torch.randn(5)}
    broken = {**expected, "dt_proj.weight": torch.zeros(8, 2), "A_log": torch.zeros(5)}
    assert all(torch.allclose(broken[n], expected[n], rtol=1e-3, atol=1e-5) for n in expected)  # the old check
    assert set(mismatches(broken, expected, rtol=1e-3)) == {"A_log", "dt_proj.weight"}
    assert relative_error(broken["A_log"], expected["A_log"]) == 1.0


def test_tiny_tensors_are_judged_on_their_own_scale():
    torch.manual_seed(1)
    tiny = 1e-11 * torch.randn(100)
    close = tiny * (1 + 1e-5 * torch.randn(100))  # float32 rounding-level differences
    wrong_sign = -tiny
    assert mismatches({"g": close}, {"g": tiny}, rtol=1e-4) == {}
    assert relative_error(wrong_sign, tiny) == 2.0
    assert set(mismatches({"g": wrong_sign}, {"g": tiny}, rtol=1e-4)) == {"g"}


def test_missing_shapes_nan_and_exact_zeros():
    zero, one = torch.zeros(3), torch.ones(3)
    assert mismatches({"a": zero}, {"a": zero}, rtol=0.0) == {}  # both exactly zero: equal
    assert relative_error(one, zero) == math.inf
    assert relative_error(torch.ones(2, 3), torch.ones(3, 2)) == math.inf
    assert set(mismatches({"a": one, "extra": one}, {"a": one, "gone": one}, 1e-3)) == {"extra", "gone"}
    assert set(mismatches({"a": torch.tensor([1.0, float("nan")])}, {"a": torch.ones(2)}, 1e-3)) == {"a"}


def test_complex_tensors_compare_their_imaginary_parts():
    """S5's complex parameters: a wrong imaginary part is a mismatch (a cast to real would drop it)."""
    value = torch.tensor([1.0 + 2.0j, -3.0 + 0.5j])
    assert relative_error(value, value.clone()) == 0.0
    assert relative_error(value.conj(), value) > 0.5
