"""Recurrent steps against the full forward: incremental == full recompute over the same history.

Equivalence here is exact arithmetic equivalence up to rounding: stepping through a history of any length
from the initial state gives, at every position, the hidden state (and therefore the scores) that
``encode_sequence`` computes over that whole history in one pass, in float64 to 1e-10. Past ``max_len`` the
reference is the full recompute over the *same* (untruncated) history; serving a window of the last
``max_len`` items is a different history and is tested in tests/serve.
"""

from __future__ import annotations

import pytest
import torch

from ss4rec.models.gru4rec import GRU4Rec
from ss4rec.models.mamba4rec import Mamba4Rec
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.stepping import step_through

N_ITEMS, MAX_LEN = 31, 8


def history(length: int, gaps: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """One user's history as a (1, length) evaluation batch whose last target is a held-out item."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (1, length + 1), generator=g)
    if gaps == "zero":
        steps = torch.zeros(1, length + 1, dtype=torch.long)
    elif gaps == "huge":
        steps = torch.randint(10**8, 10**9, (1, length + 1), generator=g)
    else:  # bursts: half zero, the rest seconds to months
        steps = torch.randint(0, 2, (1, length + 1), generator=g) * torch.randint(1, 10**7, (1, length + 1), generator=g)
    times = 9 * 10**8 + steps.cumsum(1)
    ratings = torch.randint(1, 11, (1, length + 1), generator=g).double() / 2
    return {
        "users": torch.zeros(1, dtype=torch.long),
        "items": items[:, :-1], "times": times[:, :-1], "ratings": ratings[:, :-1],
        "lengths": torch.tensor([length]),
        "target_items": items[:, 1:], "target_times": times[:, 1:], "target_ratings": ratings[:, 1:],
    }  # fmt: skip


def ss4rec(**kw):
    return SS4Rec(N_ITEMS, 1, hidden=16, d_state=8, mamba_d_state=4, init="mamba", max_len=MAX_LEN, **kw)


def _random_profile(model):
    with torch.no_grad():  # it starts at zero, which a step that ignored it would match
        model.rating_profile.weight[1:].normal_()
    return model


def _random_norms(model):
    """Every LayerNorm's weight, bias and epsilon drawn at random (they start at 1, 0 and one epsilon, which a step
    reading one norm's parameters for another's would match)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5), module.bias.normal_(0, 0.3)
                module.eps = float(torch.empty(()).uniform_(0.01, 0.1))
    return model


MODELS = {
    "ss4rec": lambda: ss4rec(),
    "ss4rec-unknown": lambda: ss4rec(target_time="unknown"),
    "ss4rec-log1p-floor-ratings": lambda: ss4rec(time_transform="log1p", zero_gap="floor", time_unit="hour",
                                                 use_ratings=True),
    "ss4rec-no-time-3-layers": lambda: ss4rec(use_time=False, n_layers=3),
    "ss4rec-rating-profile": lambda: _random_profile(ss4rec(target_time="unknown", rating_profile=True)),
    "ss4rec-s5-only": lambda: ss4rec(blocks="s5_only"),
    "ss4rec-mamba-only": lambda: ss4rec(blocks="mamba_only"),
    "ss4rec-ffn-unknown-ratings": lambda: _random_norms(ss4rec(ffn=True, target_time="unknown", use_ratings=True)),
    "ss4rec-ffn-s5-only": lambda: _random_norms(ss4rec(ffn=True, blocks="s5_only", n_layers=3)),
    "gru4rec-2-layers": lambda: GRU4Rec(N_ITEMS, 1, hidden=16, gru_hidden=12, n_layers=2),
    "mamba4rec": lambda: Mamba4Rec(N_ITEMS, 1, hidden=16, d_state=4, init="mamba"),
    "mamba4rec-2-layers": lambda: Mamba4Rec(N_ITEMS, 1, hidden=16, d_state=4, n_layers=2, init="mamba"),
}  # fmt: skip


def build(name: str):
    torch.manual_seed(0)
    return MODELS[name]().double().eval()


def stepper(model, kind: str):
    """``model.step`` or the serving core's ``model.frozen_step()`` (constants derived once)."""
    return model.step if kind == "step" else model.frozen_step()


STEPPERS = ["step", "frozen"]


@pytest.mark.parametrize("kind", STEPPERS)
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("length", "gaps"), [(1, "bursts"), (5, "zero"), (6, "huge"), (3 * MAX_LEN + 5, "bursts")])
def test_steps_equal_full_forward(name, length, gaps, kind):
    model = build(name)
    batch = history(length, gaps, seed=length)
    full = model.encode_sequence(batch)  # (1, L, D)
    stepped, _ = step_through(model, batch, step=stepper(model, kind))
    torch.testing.assert_close(stepped, full, rtol=0, atol=1e-10)
    # scores and ratings of the query at the last position
    query_full, query_step = full[:, -1], stepped[:, -1]
    torch.testing.assert_close(model.score(query_step), model.score(query_full), rtol=0, atol=1e-10)
    targets = batch["target_items"][:, -1]
    torch.testing.assert_close(
        model.predict_rating(query_step, targets), model.predict_rating(query_full, targets), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("kind", STEPPERS)
@pytest.mark.parametrize("name", ["ss4rec", "ss4rec-unknown", "ss4rec-rating-profile", "gru4rec-2-layers",
                                  "mamba4rec-2-layers"])  # fmt: skip
def test_step_continues_a_state_and_never_modifies_it(name, kind):
    """Split a history anywhere: the state after the first part continues into the second; peeking
    (stepping without keeping the result) leaves the state untouched."""
    model = build(name)
    batch = history(13, "bursts", seed=3)
    full = model.encode_sequence(batch)
    cut = 7
    first = {k: v[:, :cut] if v.dim() == 2 else v for k, v in batch.items()} | {"lengths": torch.tensor([cut])}
    second = {k: v[:, cut:] if v.dim() == 2 else v for k, v in batch.items()} | {"lengths": torch.tensor([13 - cut])}
    step = stepper(model, kind)
    _, state = step_through(model, first, step=step)
    before = {k: v.clone() for k, v in state.items()}
    hidden, _ = step_through(model, second, state, step=step)
    torch.testing.assert_close(hidden, full[:, cut:], rtol=0, atol=1e-10)
    for k, v in state.items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kind", STEPPERS)
def test_rows_of_different_lengths_step_together(kind):
    """A batch of right-padded rows: padding never changes a row's state."""
    model = build("ss4rec")
    step = stepper(model, kind)
    rows = [history(n, "bursts", seed=n) for n in (9, 2, 5)]
    width = 9
    batch = {
        k: torch.cat([torch.nn.functional.pad(r[k], (0, width - r[k].shape[1])) if r[k].dim() == 2 else r[k]
                      for r in rows]) for k in rows[0]
    }  # fmt: skip
    hidden, state = step_through(model, batch, step=step)
    for i, row in enumerate(rows):
        n = int(row["lengths"])
        torch.testing.assert_close(hidden[i, :n], model.encode_sequence(row)[0], rtol=0, atol=1e-10)
        _, alone = step_through(model, row, step=step)
        for k in state:
            torch.testing.assert_close(state[k][i], alone[k][0], rtol=0, atol=1e-12)


def test_models_without_a_step_say_so():
    from ss4rec.models.sasrec import SASRec

    model = SASRec(N_ITEMS, 1, hidden=8, max_len=MAX_LEN)
    assert not model.supports_step
    with pytest.raises(NotImplementedError, match="recompute"):
        model.allocate_state(1)


@pytest.mark.parametrize("name", ["ss4rec", "mamba4rec"])
def test_steps_follow_weight_changes(name):
    """Tensors derived from parameters are kept between steps; changing the weights (in place, as an
    optimiser or load_state_dict does, or by replacing them) must reach the next step."""
    model = build(name)
    batch = history(6, "bursts", seed=1)
    step_through(model, batch)  # fills the derived-tensor caches
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    torch.testing.assert_close(step_through(model, batch)[0], model.encode_sequence(batch), rtol=0, atol=1e-10)
    model.float()  # new tensors, another dtype
    torch.testing.assert_close(step_through(model, {k: v.float() if v.is_floating_point() else v for k, v in
                                                    batch.items()})[0],
                               model.encode_sequence(batch), rtol=0, atol=1e-5)  # fmt: skip


# the compiled step does not cover rating_profile (its own test below)
SS4REC_MODELS = sorted(n for n in MODELS if n.startswith("ss4rec") and "profile" not in n.split("-"))


def test_the_fused_step_refuses_a_rating_profile():
    from ss4rec.models.ss4rec_step import FrozenStep

    model = MODELS["ss4rec-rating-profile"]()
    assert model.frozen_step() == model.step
    with pytest.raises(ValueError, match="does not cover rating_profile"):
        FrozenStep(model)


@pytest.mark.parametrize("name", SS4REC_MODELS)
@pytest.mark.parametrize(("length", "gaps"), [(1, "bursts"), (5, "zero"), (6, "huge"), (3 * MAX_LEN + 5, "bursts")])
def test_compiled_float32_step_equals_full_forward(name, length, gaps, monkeypatch):
    """The serving step of a float32 SS4Rec runs the compiled kernel (ss4rec/kernels/ss4rec_step.c): the same
    hidden states as the float32 full forward and as the PyTorch step, to float32 rounding, and it never
    modifies the state it reads."""
    import os

    from ss4rec.models.ss4rec_step import FrozenStep

    torch.manual_seed(0)
    model = MODELS[name]().eval()
    batch = {k: v.float() if v.is_floating_point() else v for k, v in history(length, gaps, seed=length).items()}
    frozen = FrozenStep(model)
    stepped, state = step_through(model, batch, step=frozen)
    if os.environ.get("SS4REC_KERNELS", "auto") != "off":
        assert frozen.compiled is not False, "the compiled step did not load"
    torch.testing.assert_close(stepped, model.encode_sequence(batch), rtol=0, atol=2e-5)
    by_torch, torch_state = step_through(model, batch, step=FrozenStep(model, compiled=False))
    torch.testing.assert_close(stepped, by_torch, rtol=0, atol=2e-5)
    for k in state:
        torch.testing.assert_close(state[k], torch_state[k], rtol=0, atol=2e-5)
    before = {k: v.clone() for k, v in state.items()}
    event = {"items": torch.tensor([3]), "ratings": torch.tensor([4.5]), "times": batch["times"][:, -1] + 60,
             "next_times": batch["times"][:, -1] + 600}  # fmt: skip
    frozen(state, event)
    for k, v in state.items():
        assert torch.equal(v, before[k]), k


def test_compiled_step_batches_padded_rows():
    """Rows of different lengths stepped together by the compiled kernel (a state rebuild) equal each row
    stepped alone."""
    from ss4rec.models.ss4rec_step import FrozenStep

    torch.manual_seed(0)
    model = ss4rec(use_ratings=True).eval()
    frozen = FrozenStep(model)
    rows = [{k: v.float() if v.is_floating_point() else v for k, v in history(n, "bursts", seed=n).items()}
            for n in (9, 2, 5)]  # fmt: skip
    batch = {k: torch.cat([torch.nn.functional.pad(r[k], (0, 9 - r[k].shape[1])) if r[k].dim() == 2 else r[k]
                           for r in rows]) for k in rows[0]}  # fmt: skip
    hidden, state = step_through(model, batch, step=frozen)
    for i, row in enumerate(rows):
        n = int(row["lengths"])
        alone_hidden, alone = step_through(model, row, step=frozen)
        torch.testing.assert_close(hidden[i, :n], alone_hidden[0], rtol=0, atol=1e-6)
        for k in state:
            torch.testing.assert_close(state[k][i], alone[k][0], rtol=0, atol=1e-6)


def test_models_the_kernel_does_not_cover_keep_the_pytorch_step():
    """Biases on Mamba's projections, or layers (feed-forward blocks included) wider than the kernel's buffers: the
    PyTorch step, same results."""
    from ss4rec.kernels.step import MAX_WIDTH, CompiledStep
    from ss4rec.models.ss4rec_step import FrozenStep

    torch.manual_seed(0)
    model = ss4rec().eval()
    if CompiledStep.build(model) is None:
        pytest.skip("compiled kernels unavailable here (SS4REC_KERNELS=off or no compiler)")
    model.layers[0].mamba.in_proj.bias = torch.nn.Parameter(torch.randn(model.layers[0].mamba.in_proj.out_features))
    assert CompiledStep.build(model) is None
    batch = {k: v.float() if v.is_floating_point() else v for k, v in history(7, "bursts", seed=2).items()}
    frozen = FrozenStep(model)
    torch.testing.assert_close(step_through(model, batch, step=frozen)[0], model.encode_sequence(batch), rtol=0,
                               atol=2e-5)  # fmt: skip
    assert frozen.compiled is False
    assert CompiledStep.build(ss4rec(ffn=True)) is not None  # within the buffers: the kernel
    for hidden, fits in ((MAX_WIDTH // 2 + 1, False), (MAX_WIDTH // 2, True)):  # inner 4 x hidden vs 2 x MAX_WIDTH
        s5_ffn = SS4Rec(N_ITEMS, 1, hidden=hidden, d_state=4, n_layers=1, blocks="s5_only", ffn=True, max_len=MAX_LEN)
        assert (CompiledStep.build(s5_ffn) is not None) == fits, hidden
    wide = SS4Rec(N_ITEMS, 1, hidden=8, d_state=MAX_WIDTH + 1, mamba_d_state=4, n_layers=1, max_len=MAX_LEN).eval()
    assert CompiledStep.build(wide) is None
