"""``init_from``: start a new run from another run's weights, e.g. a rating network from a ranking run's encoder.

Every tensor of the other run's model whose name and shape match one of this model's is copied; the rest keeps
its fresh initialisation. Never copied: the frozen rating base (``model.rating_base``: this run reads its own) and,
from a run whose loss had no rating term, the parts only that term trains (the model's ``rating_only``: a ranking
run's rating head is its random start, and a correction of a rating base starts at zero).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ss4rec.checkpoints import model_state, read_checkpoint
from ss4rec.errors import UserError
from ss4rec.paths import chosen_checkpoint, no_checkpoint

log = logging.getLogger(__name__)

#: state-dict prefixes never copied: the frozen base's tables, which come from this run's own model.rating_base
NOT_COPIED = ("rating_base.",)


class InitFromError(UserError):
    """``init_from`` names no usable checkpoint, or one whose model does not fit this run's."""


def init_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``init_from`` names: a ``.ckpt`` file, or a run folder's best checkpoint (the one its
    ``metrics.json`` names, else its only ``checkpoints/best-*.ckpt``)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise InitFromError(f"init_from={str(path)!r}: no such file or run folder; expected a run folder such as "
                            "outputs/runs/<data>/<model>/<time> or a checkpoint such as <run>/checkpoints/best-epochNNN.ckpt")  # fmt: skip
    chosen, best = chosen_checkpoint(path)
    if chosen is not None:
        return chosen
    raise InitFromError(f"init_from={str(path)!r}: {no_checkpoint(path, best)}")


def copy_matching(model: nn.Module, source: dict[str, torch.Tensor], skip: tuple[str, ...] = (),
                  where: str = "init_from") -> dict[str, list[str]]:  # fmt: skip
    """Copy into ``model`` every tensor of ``source`` with the name and shape of one of its parameters or buffers,
    but the rating base's and those named ``skip`` (prefixes). Returns the names ``copied``, kept ``fresh`` (not
    copied) and ``unused`` (in ``source`` only). Raises InitFromError when a name matches with another shape
    (another model size) or nothing matches (another model)."""
    never = (*NOT_COPIED, *skip)
    state = model.state_dict()
    own = {name: value for name, value in state.items() if not name.startswith(never)}
    left = [name for name in state if name.startswith(skip)] if skip else []
    shared = sorted(set(own) & set(source))
    clashes = [f"{name}: {tuple(source[name].shape)} there, {tuple(own[name].shape)} here"
               for name in shared if source[name].shape != own[name].shape]  # fmt: skip
    if clashes:
        more = f"\n  and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise InitFromError(f"{where}: the checkpoint's model has other sizes (train it with this run's model "
                            "options and data):\n  " + "\n  ".join(clashes[:5]) + more)  # fmt: skip
    if not shared:
        raise InitFromError(f"{where}: none of the checkpoint's {len(source)} tensors has the name of one of this "
                            f"model's ({', '.join(sorted(own)[:5])}, ...); expected a run of the same model")  # fmt: skip
    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for name in shared:
            targets[name].copy_(source[name])
    return {"copied": shared, "fresh": sorted({*own} - {*source} | {*left}),
            "unused": sorted(name for name in source if name not in own and not name.startswith(never))}  # fmt: skip


def trained_rating(checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint's run had a rating term in its loss (True when the checkpoint does not say)."""
    objective = (checkpoint.get("hyper_parameters") or {}).get("objective")
    if not isinstance(objective, dict) or "rating_weight" not in objective:
        return True
    return float(objective["rating_weight"] or 0.0) > 0


def warm_start(model: nn.Module, path: str | Path, freeze: bool = False) -> dict[str, Any]:
    """Load ``init_from``'s checkpoint into ``model`` (:func:`copy_matching`), with ``freeze`` the copied parameters
    then fixed (``requires_grad`` off, so no optimizer sees them); returns what the run record keeps."""
    checkpoint = init_checkpoint(path)
    saved = read_checkpoint(checkpoint, what="init_from")
    skip = () if trained_rating(saved) else tuple(getattr(model, "rating_only", ()))
    done = copy_matching(model, model_state(saved), skip)
    if freeze:
        parameters = dict(model.named_parameters())
        done["frozen"] = [name for name in done["copied"] if name in parameters]
        for name in done["frozen"]:
            parameters[name].requires_grad_(False)
    log.info("init_from %s: copied %d tensors%s, %d kept their initialisation (%s)", checkpoint, len(done["copied"]),
             " (frozen)" if freeze else "", len(done["fresh"]), ", ".join(done["fresh"]) or "none")  # fmt: skip
    return {"checkpoint": str(checkpoint.resolve()), **done}
