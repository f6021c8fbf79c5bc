"""task.target_weighting: ``batch`` averages the loss over a batch's targets; ``uniform`` weighs every training
target the same (the batch's sum over the epoch's mean targets per batch), whatever its batch holds."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from composing import compose_train
from ss4rec.training import build_datamodule, build_module

SMALL = ["model=gru4rec", "data.max_len=20", "data.batch_size=16", "data.length_pool=4", "logger=none"]


def _reference_ce(module, batch) -> torch.Tensor:
    """Per-target full cross-entropy in float64, from the model's queries and item table."""
    query, items, _ = module.model.train_queries(batch)
    logits = query.double() @ module.model.item_embedding.weight.double()[1:].T
    return torch.logsumexp(logits, 1) - logits.gather(1, (items - 1)[:, None])[:, 0]


@pytest.mark.parametrize("weighting", ["batch", "uniform"])
def test_the_loss_weighs_targets_as_configured(tmp_path, weighting):
    cfg = compose_train([*SMALL, f"task.target_weighting={weighting}"], tmp_path)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm).eval()  # no dropout: the reference sees the same forward
    module._targets_per_batch = dm.train_targets_per_batch() if weighting == "uniform" else None
    batches = sorted(dm.train_dataloader(), key=lambda b: int((b["target_items"] > 0).sum()))
    seen = set()
    for batch in (batches[0], batches[len(batches) // 2], batches[-1]):  # the fewest targets, the median, the most
        per_target = _reference_ce(module, batch)
        seen.add(len(per_target))
        expected = per_target.sum() / dm.train_targets_per_batch() if weighting == "uniform" else per_target.mean()
        loss = module.training_step(batch, 0)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert len(seen) > 1  # batches of different sizes, where the two weightings differ


@pytest.mark.parametrize("weighting", ["batch", "uniform"])
def test_training_reads_the_mean_targets_per_batch_only_for_uniform(tmp_path, weighting):
    cfg = compose_train([*SMALL, f"task.target_weighting={weighting}"], tmp_path)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False).fit(module, dm)
    expected = dm.train_targets_per_batch() if weighting == "uniform" else None
    assert module._targets_per_batch == expected
    assert module.hparams.target_weighting == weighting  # saved: a checkpoint resumes with it
