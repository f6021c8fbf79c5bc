"""Mamba4Rec specifics: no time input, the official single-layer residual and init (shared contract:
test_sequential_baselines.py)."""

from __future__ import annotations

import torch

from batches import N_ITEMS, sequence_batch
from ss4rec.models.mamba4rec import Mamba4Rec


def make(**kwargs) -> Mamba4Rec:
    torch.manual_seed(0)
    kwargs = {"d_state": 4, "init": "mamba"} | kwargs  # mamba init: livelier dt, outputs depend on the past
    return Mamba4Rec(N_ITEMS, 4, hidden=8, **kwargs).eval()


def test_no_time_input():
    model = make()
    batch = sequence_batch([6, 3])
    shifted = dict(batch, times=batch["times"] * 7 + 5, target_times=batch["target_times"] * 3)
    torch.testing.assert_close(model.encode_sequence(shifted), model.encode_sequence(batch))


def test_official_residual_and_init():
    one, two = make(n_layers=1, init="official"), make(n_layers=2, init="official")
    assert not one.layers[0].residual and all(layer.residual for layer in two.layers)
    assert make(n_layers=1, single_layer_residual=True).layers[0].residual
    # RecBole's init reaches inside the Mamba block (dt bias zeroed); the mamba init keeps its dt range
    assert torch.count_nonzero(one.layers[0].mamba.dt_proj.bias) == 0
    dt = torch.nn.functional.softplus(make(n_layers=1).layers[0].mamba.dt_proj.bias)
    assert 1e-3 <= dt.min() and dt.max() <= 0.1 + 1e-6
    batch = sequence_batch([5, 2])
    residual = make(n_layers=1, init="official", single_layer_residual=True)
    residual.load_state_dict(one.state_dict())  # same weights, only the add differs
    assert not torch.allclose(residual.encode_sequence(batch), one.encode_sequence(batch))
