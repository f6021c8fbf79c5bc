"""``train(cfg)`` end to end gets popularity's numbers right: every validation and test metric equals a direct
count from the store (tests/popularity.py), with the catalogue scored in several chunks through the real
evaluation loop, and the same checkpoint tested at other chunk widths gives bit-identical metrics
(popularity has many exact ties, so the tie rule is exercised where the chunks join)."""

from __future__ import annotations

import lightning as L
import pytest

from composing import compose_train
from popularity import popularity_metrics
from ss4rec.lightning_module import RecModule
from ss4rec.training import build_datamodule, train

COMMON = ["model=pop", "logger=none", "data.max_len=20", "trainer.enable_progress_bar=false"]


def _test_at_chunk_width(checkpoint: str, datamodule, chunk_size: int) -> dict[str, float]:
    module = RecModule.load_from_checkpoint(checkpoint, map_location="cpu")
    module.hparams.eval_chunk_size = chunk_size
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(module, datamodule=datamodule, verbose=False)[0]


@pytest.mark.parametrize("task", ["ranking", "rating"])
def test_popularity_metrics_equal_a_direct_count(task, tmp_path):
    # 100 items a chunk: 14 chunks of ML-100K's 1,349 items, the last one padded
    cfg = compose_train([*COMMON, f"task={task}", "evaluation.chunk_size=100"], tmp_path)
    summary = train(cfg)
    datamodule = build_datamodule(cfg)
    assert datamodule.n_items > 10 * 100  # the multi-chunk path really runs
    for stage, got in (("val", summary["best_val"]), ("test", summary["test"])):
        expected = popularity_metrics(datamodule.store, stage)
        names = [n for n in expected if (n in ("rmse", "mae")) == (task == "rating")]
        assert {f"{stage}/{n}" for n in names} <= got.keys()
        for name in names:
            assert got[f"{stage}/{name}"] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), (stage, name)
    if task == "ranking":  # one chunk, a divisor of 1,349 (= 19 x 71) and a small width: the same numbers
        for chunk_size in (8192, 71, 7):
            assert _test_at_chunk_width(summary["checkpoint"], datamodule, chunk_size) == summary["test"], chunk_size
