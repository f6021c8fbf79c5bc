"""``init_from``: a run starts from another run's weights (ss4rec.warm_start), end to end and tensor by tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from composing import compose_train
from ss4rec.config_checks import check_train_config
from ss4rec.errors import ConfigError
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.training import train
from ss4rec.warm_start import InitFromError, copy_matching, init_checkpoint

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit"]


def small_ss4rec(seed: int, **options) -> SS4Rec:
    torch.manual_seed(seed)
    return SS4Rec(n_items=12, n_users=5, hidden=8, d_state=4, mamba_d_state=4, **options)


def test_copy_matching_copies_each_tensor_of_the_same_name_and_keeps_the_rest():
    source, target = small_ss4rec(0), small_ss4rec(1, use_ratings=True)
    before = {name: value.clone() for name, value in target.state_dict().items()}
    done = copy_matching(target, source.state_dict(), skip=("rating_head.",))
    after = target.state_dict()
    assert done["copied"] and "item_embedding.weight" in done["copied"] and "layers.1.s5.seq.Lambda" in done["copied"]
    for name in done["copied"]:
        assert torch.equal(after[name], source.state_dict()[name]), name
    assert set(done["fresh"]) == {"rating_embedding.weight"} | {n for n in after if n.startswith("rating_head.")}
    for name in done["fresh"]:
        assert torch.equal(after[name], before[name]), name  # skipped or absent: its own initialisation
    assert not torch.equal(after["rating_head.mlp.0.weight"], source.state_dict()["rating_head.mlp.0.weight"])
    assert done["unused"] == []


def test_copy_matching_refuses_another_size_or_another_model():
    with pytest.raises(InitFromError, match=r"(?s)other sizes.*item_embedding.weight: \(13, 8\) there, \(13, 16\) here.*and 27 more"):
        copy_matching(SS4Rec(n_items=12, n_users=5, hidden=16, d_state=4, mamba_d_state=4), small_ss4rec(0).state_dict())
    with pytest.raises(InitFromError, match="none of the checkpoint's 2 tensors"):
        copy_matching(small_ss4rec(0), {"user_embedding.weight": torch.zeros(6, 8), "item_bias.weight": torch.zeros(13, 1)})


def test_init_checkpoint_names_a_run_folders_best_checkpoint(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(InitFromError, match="no checkpoints/best-\\*.ckpt in the folder and no metrics.json"):
        init_checkpoint(tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best-epoch003.ckpt"
    best.write_bytes(b"")
    assert init_checkpoint(tmp_path / "run") == best
    (tmp_path / "run" / "checkpoints" / "best-epoch007.ckpt").write_bytes(b"")
    with pytest.raises(InitFromError, match="2 best checkpoints"):
        init_checkpoint(tmp_path / "run")
    with pytest.raises(InitFromError, match="no such file or run folder"):
        init_checkpoint(tmp_path / "elsewhere")


def test_init_checkpoint_says_when_a_run_record_has_lost_its_checkpoint(tmp_path):
    """A run record as git holds it: metrics.json names a best checkpoint that is not in the folder."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"checkpoint": "/elsewhere/checkpoints/best-epoch004.ckpt"}))
    with pytest.raises(InitFromError, match=r"its metrics.json names best-epoch004.ckpt, which is not in .*run/checkpoints "
                       r"\(run records in git keep no checkpoints\); train the run again into this folder"):  # fmt: skip
        init_checkpoint(tmp_path / "run")


def test_a_rating_run_starts_from_a_ranking_runs_encoder_and_its_own_zero_correction(tmp_path):
    """SS4Rec correcting a frozen MF, started from a ranking run with a learning rate too small to move anything:
    its encoder is the ranking run's best checkpoint, and its correction keeps its zero start (the ranking run's
    rating head, never trained, is not copied), so it scores the MF run's RMSE."""
    mf = train(compose_train(["model=mf", "task=rating", *SMALL], tmp_path / "mf"))
    ranking = train(compose_train(["model=ss4rec", "model.use_ratings=true", *SMALL], tmp_path / "ranking"))
    summary = train(compose_train(["model=ss4rec", "task=rating", "model.use_ratings=true", f"model.rating_base={tmp_path / 'mf'}",
                                   f"init_from={tmp_path / 'ranking'}", "optimizer.lr=1e-12", *SMALL], tmp_path / "rating"))  # fmt: skip
    assert summary["status"] == "finished"
    started = summary["initialised_from"]
    assert started["checkpoint"] == str(Path(ranking["checkpoint"]).resolve())
    assert "rating_embedding.weight" in started["copied"] and "layers.0.mamba.A_log" in started["copied"]
    assert {"rating_head.mlp.3.weight", "rating_head.mlp.3.bias"} <= set(started["fresh"])
    source = torch.load(ranking["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    trained = torch.load(summary["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    for name in started["copied"]:
        torch.testing.assert_close(trained[f"model.{name}"], source[f"model.{name}"], rtol=0, atol=1e-6)
    assert summary["test"]["test/rmse"] == pytest.approx(mf["test"]["test/rmse"], abs=1e-5)


def test_init_from_is_checked_before_anything_is_built(tmp_path):
    train(compose_train(["model=mf", "task=rating", *SMALL], tmp_path / "mf"))
    train(compose_train(["model=ss4rec", "data.holdout_last=1", *SMALL], tmp_path / "other_split"))
    cases = {
        str(tmp_path / "missing"): "init_from=.*no such file or run folder",
        str(tmp_path / "mf"): r"init_from=.*a run of this model \(ss4rec.models.ss4rec.SS4Rec\); it trained ss4rec.models.mf",
        str(tmp_path / "other_split"): r"trained on another split .*\n  data.holdout_last: 1 in that run, 0 here",
    }
    for path, pattern in cases.items():
        with pytest.raises(ConfigError, match=pattern):
            check_train_config(compose_train(["model=ss4rec", f"init_from={path}", *SMALL], tmp_path / "run"))
    # a resumed run reads its weights from ckpt_path: init_from is not read then
    check_train_config(compose_train(["model=ss4rec", f"init_from={tmp_path / 'missing'}", "ckpt_path=x.ckpt", *SMALL]),
                       check_checkpoint=False)  # fmt: skip


def test_a_run_of_another_size_is_refused_when_the_weights_are_loaded(tmp_path):
    train(compose_train(["model=ss4rec", "model.hidden=16", *SMALL], tmp_path / "wide"))
    with pytest.raises(InitFromError, match="other sizes"):
        train(compose_train(["model=ss4rec", f"init_from={tmp_path / 'wide'}", *SMALL], tmp_path / "run"))


def test_init_freeze_keeps_the_copied_parameters_fixed_through_training_and_a_resume(tmp_path):
    """init_freeze=true: the copied parameters end exactly as the ranking run left them, after an epoch and after
    a resumed second one (the resume reads init_from again to freeze the same ones); the fresh ones train."""
    ranking = train(compose_train(["model=ss4rec", "model.use_ratings=true", *SMALL], tmp_path / "ranking"))
    source = torch.load(ranking["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    options = ["model=ss4rec", "task=rating", "model.use_ratings=true", f"init_from={tmp_path / 'ranking'}",
               "init_freeze=true", "optimizer.lr=0.01", *SMALL]  # fmt: skip
    first = train(compose_train([*options, "trainer.max_epochs=1"], tmp_path / "rating"))
    last = tmp_path / "rating" / "checkpoints" / "last.ckpt"
    resumed = train(compose_train([*options, f"ckpt_path={last}"], tmp_path / "rating"))
    assert resumed["status"] == "finished" and resumed["epochs"] == 2
    assert set(resumed["initialised_from"]["frozen"]) == set(first["initialised_from"]["frozen"])
    assert "layers.0.s5.seq.Lambda" in first["initialised_from"]["frozen"]
    trained = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    for name in first["initialised_from"]["frozen"]:
        assert torch.equal(trained[f"model.{name}"], source[f"model.{name}"]), name
    assert not torch.equal(trained["model.rating_head.mlp.0.weight"], source["model.rating_head.mlp.0.weight"])


def test_init_freeze_needs_init_from(tmp_path):
    with pytest.raises(ConfigError, match="invalid option init_freeze=true: expected false without init_from"):
        check_train_config(compose_train(["model=ss4rec", "init_freeze=true", *SMALL], tmp_path / "run"))
