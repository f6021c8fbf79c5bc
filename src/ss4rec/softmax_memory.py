"""The memory a full softmax over the catalogue needs per training step, checked before training starts.

``task/ranking_loss=ce`` scores every item for every target of a batch: a (targets, n_items) float32 logits
tensor, the softmax its loss keeps for backward, and the gradient of the logits, about 12 bytes per logit at
once. For ML-25M (59,047 items) and 64 windows of 200 targets that is 12,800 x 59,047 x 12 B = 9.1 GB per step,
for a loss that sampled softmax (256 negatives: 12,800 x 257 x 12 B = 39 MB) approximates well.

``check_full_softmax`` refuses (ConfigError) a full softmax that needs more than half the device's memory and
warns, with the number, above 1 GiB.
"""

from __future__ import annotations

import logging
import os

import torch

from ss4rec.errors import ConfigError

log = logging.getLogger(__name__)

BYTES_PER_LOGIT = 12  # logits + softmax kept for backward + gradient of the logits, float32
WARN_BYTES = 2**30
FULL_SOFTMAX = "ss4rec.objectives.CrossEntropy"


def full_softmax_bytes(targets_per_batch: int, n_items: int) -> int:
    return int(targets_per_batch) * int(n_items) * BYTES_PER_LOGIT


def device_bytes(accelerator: str) -> tuple[int, str]:
    """(memory, what it is) of the device training runs on: the first GPU's, else the machine's RAM."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), f"GPU {props.name}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"


def check_full_softmax(ranking_target: str | None, targets_per_batch: int, n_items: int,
                       available: int, where: str = "the device") -> int | None:
    """Refuse or warn about a full softmax too large for ``available`` bytes; its bytes, or None if not one."""
    if ranking_target != FULL_SOFTMAX:
        return None
    need = full_softmax_bytes(targets_per_batch, n_items)
    what = (f"full cross-entropy over {n_items:,} items x {targets_per_batch:,} targets per batch needs about "
            f"{need / 2**30:.1f} GiB per training step")
    fix = "task/ranking_loss=sampled_softmax (or bpr), or a smaller data.batch_size / data.max_len"
    if need > available / 2:
        raise ConfigError([f"task.ranking_loss=ce: {what}, more than half of {where} ({available / 2**30:.0f} GiB); "
                           f"expected {fix}"])
    if need > WARN_BYTES:
        log.warning("%s (%s has %.0f GiB); for catalogues this size use %s", what, where, available / 2**30, fix)
    return need
