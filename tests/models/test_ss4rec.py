"""SS4Rec: time gaps and their encodings, causality, padding, known vs unknown target time, ablations."""

import inspect
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gradients import mismatches
from ss4rec.batch import padding_mask
from ss4rec.models import time_encoding as te
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.paths import CONFIG_DIR

N_ITEMS = 40


def make_batch(lengths, max_len=12, seed=0, zero_gaps=True, gap_scale=50_000):
    """A ``sequence`` batch: right padding, increasing int64 times with ties, next-item targets."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    batch_size = len(lengths)
    real = padding_mask(lengths, max_len)
    items = torch.randint(1, N_ITEMS + 1, (batch_size, max_len + 1), generator=g)
    gaps = torch.randint(1, gap_scale, (batch_size, max_len + 1), generator=g)
    if zero_gaps:
        gaps[torch.rand(batch_size, max_len + 1, generator=g) < 0.4] = 0
    times = 1_600_000_000 + gaps.cumsum(1)
    ratings = torch.randint(1, 11, (batch_size, max_len + 1), generator=g) / 2
    return {
        "users": torch.arange(batch_size),
        "items": items[:, :-1] * real,
        "times": times[:, :-1] * real,
        "ratings": ratings[:, :-1] * real,
        "lengths": lengths,
        "target_items": items[:, 1:] * real,
        "target_times": times[:, 1:] * real,
        "target_ratings": ratings[:, 1:] * real,
    }


def model(**kwargs):
    torch.manual_seed(0)
    return SS4Rec(N_ITEMS, 5, hidden=16, d_state=8, mamba_d_state=8, **kwargs).eval()


def encode(m, batch):
    with torch.no_grad():
        return m.encode_sequence(batch)


# ---------------------------------------------------------------------------------------------------------
# time encoding (pure functions)
# ---------------------------------------------------------------------------------------------------------


def test_gaps_on_a_hand_example():
    times = torch.tensor([[100, 160, 160, 400, 0, 0]])
    target_times = torch.tensor([[160, 160, 400, 1000, 0, 0]])
    lengths = torch.tensor([4])
    assert te.gaps_known(times, target_times, lengths).tolist() == [[60, 0, 240, 600, 0, 0]]
    assert te.gaps_unknown(times, lengths).tolist() == [[0, 60, 0, 240, 0, 0]]


def test_unknown_is_known_shifted_by_one():
    batch = make_batch([12, 7, 1, 3], seed=1)
    known = te.time_gaps(batch["times"], batch["target_times"], batch["lengths"], "known")
    unknown = te.time_gaps(batch["times"], batch["target_times"], batch["lengths"], "unknown")
    for row, n in enumerate(batch["lengths"].tolist()):
        assert torch.equal(unknown[row, 1:n], known[row, : n - 1])
        assert (
            unknown[row, 0] == 0
            and known[row, n - 1] == batch["target_times"][row, n - 1] - batch["times"][row, n - 1]
        )
        assert (known[row, n:] == 0).all() and (unknown[row, n:] == 0).all()


def test_encode_gaps_units_policies_transforms():
    lengths = torch.tensor([3])
    gaps = torch.tensor([[0, 7200, 1, 999]])  # the last entry is padding
    assert te.encode_gaps(gaps, lengths, unit="hour").tolist() == [[0.0, 2.0, pytest.approx(1 / 3600), 0.0]]
    floored = te.encode_gaps(gaps, lengths, unit="minute", zero_gap="floor", min_gap_seconds=30)
    assert floored.tolist() == [[0.5, 120.0, 0.5, 0.0]]
    logged = te.encode_gaps(gaps, lengths, unit="second", transform="log1p")
    assert torch.allclose(
        logged, torch.tensor([[0.0, torch.log1p(torch.tensor(7200.0)), torch.log1p(torch.tensor(1.0)), 0.0]])
    )
    assert te.constant_gaps(lengths, 4).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    for bad in ({"unit": "week"}, {"transform": "sqrt"}, {"zero_gap": "drop"}):
        with pytest.raises(ValueError):
            te.encode_gaps(gaps, lengths, **bad)


def test_gaps_of_large_timestamps_are_exact():
    times = torch.tensor([[1_700_000_001, 1_700_000_002]])  # one second apart; float32 would merge them
    gaps = te.gaps_unknown(times, torch.tensor([2]))
    assert te.encode_gaps(gaps, torch.tensor([2])).tolist() == [[0.0, 1.0]]


# ---------------------------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------------------------


def test_shapes_and_interface():
    m = model(use_ratings=True)
    batch = make_batch([12, 5, 1])
    assert encode(m, batch).shape == (3, 12, 16)
    queries, targets, ratings = m.train_queries(batch)
    assert queries.shape == (int(batch["lengths"].sum()), 16) and targets.shape == ratings.shape
    query = m.eval_queries(batch)
    assert m.score(query).shape == (3, N_ITEMS + 1)
    assert m.predict_rating(query, torch.tensor([1, 2, 3])).shape == (3,)


@pytest.mark.parametrize("target_time", ["known", "unknown"])
@pytest.mark.parametrize("ffn", [False, True])
def test_padding_never_changes_real_outputs(target_time, ffn):
    m = model(target_time=target_time, use_ratings=True, ffn=ffn)
    short = make_batch([5, 9], max_len=9, seed=2)
    long = make_batch([5, 9], max_len=14, seed=2)
    for key in ("items", "times", "ratings", "target_items", "target_times", "target_ratings"):
        long[key][:, :9] = short[key]
    long["items"][:, 9:] = 0
    base = encode(m, long)
    junk = {k: v.clone() for k, v in long.items()}
    junk["items"][0, 5:] = 3  # padding of row 0 filled with junk everywhere
    junk["times"][0, 5:] = 10**9
    junk["ratings"][0, 5:] = 4.0
    junk["target_times"][0, 5:] = 7
    out = encode(m, junk)
    assert torch.allclose(out[0, :5], base[0, :5], atol=1e-6)
    assert torch.allclose(encode(m, short)[1], base[1, :9], atol=1e-5)
    assert torch.allclose(encode(m, short)[0, :5], base[0, :5], atol=1e-5)


@pytest.mark.parametrize("target_time", ["known", "unknown"])
@pytest.mark.parametrize("ffn", [False, True])
def test_causal(target_time, ffn):
    m = model(target_time=target_time, use_ratings=True, time_unit="day", ffn=ffn)
    batch = make_batch([12, 12], seed=3, zero_gaps=False)
    base = encode(m, batch)
    t = 6
    # the time of item t+1 reaches position t with `known` only
    next_time = {**batch, "times": batch["times"].clone(), "target_times": batch["target_times"].clone()}
    next_time["times"][:, t + 1 :] += 3600
    next_time["target_times"][:, t:] += 3600
    moved = encode(m, next_time)
    assert torch.allclose(moved[:, :t], base[:, :t], atol=1e-6)
    assert torch.allclose(moved[:, t], base[:, t], atol=1e-6) == (target_time == "unknown")
    # `known` reads the time of item t+1 at position t by design; `unknown` reads nothing after t
    first_time = t + 2 if target_time == "known" else t + 1
    later = {k: v.clone() for k, v in batch.items()}
    later["items"][:, t + 1 :] = 1
    later["ratings"][:, t + 1 :] = 0.5
    later["times"][:, first_time:] += 10**6
    later["target_times"][:, first_time - 1 :] += 10**6
    out = encode(m, later)
    assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
    assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-4)


def test_known_and_unknown_differ_only_in_the_gaps():
    batch = make_batch([12, 8, 3], seed=4)
    # gaps in days: in raw seconds a gap of a few hours already saturates S5 (Lambda_bar ~ 0, B_bar ~ -B/Lambda),
    # so moving the target by a day would change nothing there but zero gaps
    known, unknown = (
        model(target_time="known", time_unit="day"),
        model(target_time="unknown", time_unit="day"),
    )
    unknown.load_state_dict(known.state_dict())
    # the same weights fed the same step scales give the same outputs: the option only changes the gaps
    unknown.step_scales = known.step_scales
    assert torch.allclose(encode(unknown, batch), encode(known, batch))
    del unknown.step_scales
    # unknown never reads the target's time; known reads it at the last real position only
    moved = {**batch, "target_times": batch["target_times"].clone()}
    last = batch["lengths"] - 1
    moved["target_times"][torch.arange(3), last] += 86_400
    assert torch.allclose(encode(unknown, moved), encode(unknown, batch))
    out, base = encode(known, moved), encode(known, batch)
    for row, n in enumerate(batch["lengths"].tolist()):
        assert torch.allclose(out[row, : n - 1], base[row, : n - 1])
        assert not torch.allclose(out[row, n - 1], base[row, n - 1], atol=1e-5)


def test_block_ablations():
    batch = make_batch([12, 6], seed=5)
    s5_only, mamba_only = model(blocks="s5_only"), model(blocks="mamba_only")
    assert not any("mamba" in k for k in s5_only.state_dict())
    assert not any(".s5." in k for k in mamba_only.state_dict())
    # s5_only is exactly LayerNorm(x + S5(x, dt)) per layer
    x, dt = s5_only.embed(batch), s5_only.step_scales(batch)
    with torch.no_grad():
        for layer in s5_only.layers:
            x = layer.norm(x + layer.s5(x, dt))
    assert torch.allclose(encode(s5_only, batch), x)
    # mamba_only never reads time
    shifted = {**batch, "times": batch["times"] * 2, "target_times": batch["target_times"] * 3}
    assert torch.allclose(encode(mamba_only, shifted), encode(mamba_only, batch))
    assert not torch.allclose(encode(model(), shifted), encode(model(), batch))
    with pytest.raises(ValueError):
        model(blocks="s6_only")


def test_ffn_adds_a_feed_forward_block_after_each_layer():
    """``ffn=True`` is each official layer followed by LayerNorm(x + W2 gelu(W1 x)) (inner 4 x hidden, N(0, 0.02)
    init); off, the model has no such weights (earlier checkpoints load) and is the official one."""
    batch = make_batch([12, 6], seed=5)
    plain, ffn = model(), model(ffn=True, n_layers=3)
    assert not any("feed_forward" in k for k in plain.state_dict())
    assert all(layer.feed_forward.w1.out_features == 4 * 16 for layer in ffn.layers)
    w = ffn.layers[1].feed_forward.w2.weight
    assert abs(w.std().item() - 0.02) < 0.005 and torch.equal(ffn.layers[1].feed_forward.w1.bias, torch.zeros(64))
    x, dt = ffn.embed(batch), ffn.step_scales(batch)
    with torch.no_grad():
        for layer in ffn.layers:
            x = layer.norm(x + layer.s5(x, dt))
            x = layer.norm(x + layer.mamba(x))
            f = layer.feed_forward
            h = f.w2(torch.nn.functional.gelu(f.w1(x)))
            x = torch.nn.functional.layer_norm(x + h, (16,), f.norm.weight, f.norm.bias, 1e-12)
    torch.testing.assert_close(encode(ffn, batch), x)
    assert not torch.allclose(encode(model(ffn=True), batch), encode(plain, batch), atol=1e-3)


def reference_step_scales(batch, target_time="known", unit_seconds=1.0, transform="raw", floor_seconds=None):
    """S5 step scales (B, L) float64 from the definitions (time_encoding's docstring), one position at a time."""
    rows = []
    for times, target_times, n in zip(batch["times"].tolist(), batch["target_times"].tolist(),
                                      batch["lengths"].tolist()):
        row = []
        for t in range(len(times)):
            if t >= n:
                row.append(0.0)  # padding
                continue
            if target_time == "known":  # the gap after item t; at the last real item, to the target
                following = target_times[t] if t == n - 1 else times[t + 1]
                gap = max(following - times[t], 0) if following > 0 else 0
            else:  # the gap before item t
                gap = max(times[t] - times[t - 1], 0) if t > 0 else 0
            x = gap / unit_seconds
            if floor_seconds is not None:
                x = max(x, floor_seconds / unit_seconds)
            row.append(math.log1p(x) if transform == "log1p" else x)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "options",
    [{}, {"target_time": "unknown"}, {"time_unit": "hour", "time_transform": "log1p"},
     {"time_unit": "minute", "zero_gap": "floor", "min_gap_seconds": 30}, {"use_time": False}],
    ids=["known", "unknown", "hour-log1p", "minute-floor", "no_time"],
)
def test_step_scales_against_the_definition(options):
    batch = make_batch([12, 7, 1, 3], seed=12)
    got = model(**options).step_scales(batch)
    if options.get("use_time") is False:  # the ablation: 1 on every real position, 0 on padding
        want = torch.tensor([[1.0 if t < n else 0.0 for t in range(12)] for n in [12, 7, 1, 3]], dtype=torch.float64)
    else:
        unit = {"second": 1.0, "minute": 60.0, "hour": 3600.0}[options.get("time_unit", "second")]
        floor = options.get("min_gap_seconds") if options.get("zero_gap") == "floor" else None
        want = reference_step_scales(batch, options.get("target_time", "known"), unit,
                                     options.get("time_transform", "raw"), floor)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0)


def test_no_time_is_constant_gaps():
    batch = make_batch([12, 6], seed=6)
    no_time = model(use_time=False)
    shifted = {**batch, "times": batch["times"] * 2, "target_times": batch["target_times"] * 3}
    assert torch.allclose(encode(no_time, shifted), encode(no_time, batch))
    # the same weights with time, fed items exactly one second apart (target included): gaps of 1 everywhere
    real = padding_mask(batch["lengths"], 12)
    seconds = 1_600_000_000 + torch.arange(12).expand(2, 12)
    one_second = {**batch, "times": seconds * real, "target_times": (seconds + 1) * real}
    timed = model()
    assert torch.equal(timed.step_scales(one_second), real.float())
    assert torch.allclose(encode(no_time, batch), encode(timed, one_second))
    assert not torch.allclose(encode(no_time, batch), encode(timed, batch))  # real gaps do change it


def test_time_options_change_what_they_claim():
    with_ties = make_batch([12, 9], seed=7)
    no_ties = make_batch([12, 9], seed=7, zero_gaps=False)
    raw, logged = model(), model(time_transform="log1p")
    assert not torch.allclose(encode(raw, with_ties), encode(logged, with_ties))
    keep, floor = model(), model(zero_gap="floor", min_gap_seconds=60)
    assert not torch.allclose(encode(keep, with_ties), encode(floor, with_ties))
    floor_1s = model(zero_gap="floor", min_gap_seconds=1)
    assert torch.allclose(encode(keep, no_ties), encode(floor_1s, no_ties))  # no gap below 1 s to raise
    hours = model(time_unit="hour")
    assert not torch.allclose(encode(raw, no_ties), encode(hours, no_ties))


def test_ratings_are_read_only_when_asked():
    batch = make_batch([12, 9], seed=8)
    other = {**batch, "ratings": (6 - batch["ratings"]) * (batch["items"] > 0)}
    assert torch.allclose(encode(model(), other), encode(model(), batch))
    assert not torch.allclose(encode(model(use_ratings=True), other), encode(model(use_ratings=True), batch))


def test_layers_and_init():
    assert len(model(n_layers=3).layers) == 3
    official, own = model(), model(init="mamba")
    assert torch.equal(official.layers[0].mamba.dt_proj.bias, torch.zeros(32))
    dt = torch.nn.functional.softplus(own.layers[0].mamba.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert torch.equal(official.item_embedding.weight[0], torch.zeros(16))


def test_s5_clip_eigs_reaches_every_layer():
    assert all(layer.s5.seq.clip_eigs for layer in model(n_layers=2).layers)  # on by default
    assert not any(layer.s5.seq.clip_eigs for layer in model(n_layers=2, s5_clip_eigs=False).layers)


@pytest.mark.parametrize("ffn", [False, True])
def test_every_parameter_gets_a_gradient(ffn):
    m = model(use_ratings=True, time_unit="day", time_transform="log1p", ffn=ffn).train()
    batch = make_batch([12, 7, 2], seed=9)
    queries, targets, _ = m.train_queries(batch)
    torch.nn.functional.cross_entropy(m.score(queries), targets).backward()
    for name, p in m.named_parameters():
        if name.startswith("rating_head"):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_config_matches_constructor():
    cfg = OmegaConf.create(
        {"data": {"max_len": 50}, "model": OmegaConf.load(CONFIG_DIR / "model" / "ss4rec.yaml")}
    )
    m = instantiate(cfg.model, n_items=N_ITEMS, n_users=5)
    assert isinstance(m, SS4Rec) and m.max_len == 50
    params = set(inspect.signature(SS4Rec).parameters) - {"n_items", "n_users"}
    assert set(cfg.model) - {"_target_"} == params


def test_trains_under_bfloat16_autocast():
    """S5's complex arithmetic and the scan switch autocast off, so mixed precision runs."""
    m = model().train()
    batch = make_batch([12, 5], seed=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        queries, targets, _ = m.train_queries(batch)
        loss = torch.nn.functional.cross_entropy(m.score(queries).float(), targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for n, p in m.named_parameters() if p.grad is not None)


def ce_loss(net, batch):
    queries, targets, _ = net.train_queries(batch)
    return torch.nn.functional.cross_entropy(net.score(queries), targets)


def net_for(target_time):
    return model(target_time=target_time, use_ratings=True, time_unit="hour", dropout=0.0).train()


def moved_off_init(target_time, steps=3):
    """Weights after a few Adam steps on CPU: off the initial values, where some gradients are exactly
    structured (zero dt_proj bias) or tiny (dt_proj ~1e-11, A_log ~1e-10), so a comparison there is weak."""
    net = net_for(target_time)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(steps):
        optimizer.zero_grad()
        ce_loss(net, make_batch([12, 7, 1, 3], seed=20 + step)).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def outputs_and_gradients(state, target_time, device):
    """Encoder output and the gradients of a CE training loss on ``device``; same weights, batch, no dropout."""
    net = net_for(target_time).to(device)
    net.load_state_dict(state)
    batch = {k: v.to(device) for k, v in make_batch([12, 7, 1, 3], seed=6).items()}
    ce_loss(net, batch).backward()
    grads = {n: p.grad.cpu() for n, p in net.named_parameters() if p.grad is not None}
    return net.encode_sequence(batch).detach().cpu(), grads


def test_warm_up_moves_every_trained_weight():
    """What the CUDA test compares at: every parameter the loss reaches has left its initial value."""
    initial, state = net_for("known").state_dict(), moved_off_init("known")
    _, grads = outputs_and_gradients(state, "known", "cpu")
    assert len(grads) > 10
    for name in grads:
        assert not torch.equal(state[name], initial[name]), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("target_time", ["known", "unknown"])
def test_cuda_matches_cpu(target_time):
    """The GPU paths (parallel S5 scan; mamba_ssm/causal_conv1d kernels where installed) against the CPU ones,
    each gradient to its own size (an absolute tolerance would pass zeros for dt_proj and A_log)."""
    state = moved_off_init(target_time)
    out_cpu, grads_cpu = outputs_and_gradients(state, target_time, "cpu")
    out_gpu, grads_gpu = outputs_and_gradients(state, target_time, "cuda")
    assert mismatches({"output": out_gpu}, {"output": out_cpu}, rtol=1e-4) == {}
    assert len(grads_cpu) > 10 and all(g.abs().sum() > 0 for g in grads_cpu.values())
    assert mismatches(grads_gpu, grads_cpu, rtol=1e-3) == {}


def test_item_rating_bias_adds_its_items_offset_and_learns_from_ratings_only():
    torch.manual_seed(0)
    plain, biased = model(), model(rating_item_bias=True)
    biased.load_state_dict(plain.state_dict(), strict=False)  # same network, bias table starts at zero
    assert plain.item_rating_bias is None and "item_rating_bias.weight" not in plain.state_dict()
    query, items = torch.randn(4, 16), torch.tensor([3, 7, 3, 0])
    assert torch.equal(biased.predict_rating(query, items), plain.predict_rating(query, items))
    offsets = torch.linspace(-1.0, 1.0, N_ITEMS + 1)[:, None]
    with torch.no_grad():
        biased.item_rating_bias.weight.copy_(offsets)
    expected = plain.predict_rating(query, items).double() + offsets[items, 0].double()
    torch.testing.assert_close(biased.predict_rating(query, items).double(), expected)
    # ranking scores never read it; a rating loss reaches the rows of the rated items only
    torch.testing.assert_close(biased.score(query), plain.score(query))
    biased.predict_rating(query, items).sum().backward()
    grad = biased.item_rating_bias.weight.grad[:, 0]
    assert grad[3] == 2 and grad[7] == 1 and grad[0] == 0 and grad.abs().sum() == 3


def _profile_reference(table: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """Float64 loop: at each position the mean of ``table[bucket]`` over the rated positions so far."""
    out = torch.zeros(*ratings.shape, table.shape[1], dtype=torch.float64)
    for b in range(ratings.shape[0]):
        total, count = torch.zeros(table.shape[1], dtype=torch.float64), 0
        for t in range(ratings.shape[1]):
            bucket = int(round(float(ratings[b, t]) * 2))
            if bucket > 0:
                total, count = total + table[bucket], count + 1
            out[b, t] = total / max(count, 1)
    return out


def test_rating_profile_adds_the_running_mean_of_its_vectors():
    """Against a float64 loop: outputs with the profile minus outputs without it, and the table's gradient;
    padding, a missing rating (0) and a sequence of length 1 included; zero at the start."""
    batch = make_batch([12, 7, 1], seed=11)
    batch["ratings"][0, 3] = 0.0  # a rating missing inside a sequence is not counted
    plain, profiled = model(use_ratings=True).double(), model(use_ratings=True, rating_profile=True).double()
    profiled.load_state_dict(plain.state_dict(), strict=False)
    assert "rating_profile.weight" not in plain.state_dict()
    torch.testing.assert_close(encode(profiled, batch), encode(plain, batch), rtol=0, atol=0)
    with torch.no_grad():
        profiled.rating_profile.weight[1:].normal_()
    table = profiled.rating_profile.weight.detach().clone().requires_grad_()
    expected = _profile_reference(table, batch["ratings"])
    real = (batch["items"] > 0)[..., None]
    got = (encode(profiled, batch) - encode(plain, batch)) * real
    torch.testing.assert_close(got, expected * real, rtol=0, atol=1e-12)
    weights = torch.randn(expected.shape, dtype=torch.float64) * real
    (profiled.encode_sequence(batch) * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(profiled.rating_profile.weight.grad, table.grad, rtol=0, atol=1e-12)
    assert torch.equal(profiled.rating_profile.weight.grad[0], torch.zeros(16))  # the padding row never learns
