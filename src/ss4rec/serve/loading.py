"""Build a ``ServingCore`` from a run folder or a checkpoint, without Lightning.

A run folder (``outputs/runs/...``) holds ``checkpoints/`` and the composed config (``.hydra/config.yaml``, or
``metrics.json``'s ``config``). A checkpoint inside a run's ``checkpoints/`` finds its run the same way. The
model is rebuilt from the checkpoint's saved hyperparameters (``hydra.utils.instantiate`` of its model config)
and its ``model.*`` weights; the data are the run's prepared store (built again if the cache is missing).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import hydra
import torch
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ss4rec.checkpoints import model_state, read_checkpoint
from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options
from ss4rec.errors import CheckpointError, UserError
from ss4rec.paths import checkpoint_run, lost_checkpoint, named_checkpoint, run_metrics
from ss4rec.serve.catalogue import Catalogue
from ss4rec.serve.core import ServeOptions, ServingCore
from ss4rec.serve.interactions import EventJournal, InteractionLog
from ss4rec.serve.persistence import restore_states

log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


#: what the positional argument of ``python -m ss4rec.serve`` / ``ss4rec.recommend`` may be
RUN_OR_CHECKPOINT = "a run folder (outputs/runs/..., with checkpoints/) or a checkpoint file inside one"


def path_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a run folder or a checkpoint file (``path=<value>: expected ...``), or None.

    Only names and folders are looked at; the checkpoint's content is checked when it is loaded
    (:func:`ss4rec.checkpoints.read_checkpoint`)."""
    p = Path(path).expanduser()
    if not p.exists():
        why = "no such file or folder"
    elif p.is_dir():
        if _checkpoint_of(p) is not None:
            return None
        why = lost_checkpoint(p) or "the folder has no checkpoints/best-*.ckpt or checkpoints/last.ckpt"
    elif p.is_file():
        return None
    else:
        why = "not a regular file or folder"
    return f"path={str(path)!r}: expected {RUN_OR_CHECKPOINT} ({why})"


def _checkpoint_of(run: Path) -> Path | None:
    """The checkpoint ``metrics.json`` names, else the latest ``best-*.ckpt``, else ``last.ckpt``."""
    found = sorted((run / "checkpoints").glob("best-*.ckpt")) or sorted((run / "checkpoints").glob("last.ckpt"))
    return named_checkpoint(run) or (found[-1] if found else None)


def resolve(path: str | Path) -> tuple[Path | None, Path]:
    """(run folder or None, checkpoint) for a run folder or a checkpoint file; CheckpointError otherwise."""
    problem = path_problem(path)
    if problem is not None:
        raise CheckpointError(problem)
    path = Path(path).expanduser()
    if path.is_file():
        return checkpoint_run(path), path
    return path, _checkpoint_of(path)


def config_problem(run: Path | None, checkpoint: Path) -> str | None:
    """Why no run config can be found for ``checkpoint`` (see :func:`run_config`), or None."""
    if run is not None and (run_metrics(run).get("config") or (run / ".hydra" / "config.yaml").is_file()):
        return None
    where = f"in {run}" if run is not None else f"next to {checkpoint} (it is not inside a run's checkpoints/ folder)"
    return (f"path={str(checkpoint)!r}: no run config (metrics.json or .hydra/config.yaml) {where}; "
            "expected a run folder, or a checkpoint inside its checkpoints/ folder")  # fmt: skip


def run_config(run: Path | None) -> dict:
    """The parts of the run's config serving reads (``data``, ``model``), resolved: ``metrics.json``'s
    ``config``, else ``.hydra/config.yaml`` (whose other nodes may hold Hydra-only interpolations)."""
    if run is not None:
        config = run_metrics(run).get("config")
        if config:
            return config
        hydra_cfg = run / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            try:
                cfg = OmegaConf.load(hydra_cfg)
                return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("data", "model") if key in cfg}
            except Exception as err:  # noqa: BLE001 - a damaged YAML file or an interpolation that cannot resolve
                raise UserError(f"{hydra_cfg}: the run config cannot be read ({type(err).__name__}: {err})") from err
    raise UserError(
        f"no run config next to the checkpoint (looked for metrics.json and .hydra/config.yaml in {run}); "
        "serve the run folder, or a checkpoint inside its checkpoints/ folder"
    )


#: hyperparameters a RecModule checkpoint saves and serving reads
MODEL_HPARAMS = ("model", "n_items", "n_users", "objective")


def read_model_checkpoint(checkpoint: Path, what: str = "checkpoint") -> dict:
    """:func:`ss4rec.checkpoints.read_checkpoint` (a missing, empty, truncated, damaged or non-Lightning file
    is a CheckpointError naming it), then the hyperparameters serving needs (a foreign Lightning
    checkpoint lacks them: CheckpointError too)."""
    saved = read_checkpoint(checkpoint, what=what)
    hp = saved.get("hyper_parameters")
    missing = [k for k in MODEL_HPARAMS if not isinstance(hp, dict) or k not in hp]
    if missing:
        raise CheckpointError(f"{what}={str(checkpoint)!r} is not an ss4rec model checkpoint (its "
                              f"hyper_parameters lack {', '.join(missing)}); use a checkpoint written by train.py")  # fmt: skip
    return saved


def load_model(checkpoint: Path) -> tuple[torch.nn.Module, dict]:
    """The plain model of a RecModule checkpoint, on CPU in eval mode, and the checkpoint's hyperparameters
    (the file checked by :func:`read_model_checkpoint`)."""
    saved = read_model_checkpoint(checkpoint)
    hp = saved["hyper_parameters"]
    try:
        model = hydra.utils.instantiate(hp["model"], n_items=hp["n_items"], n_users=hp["n_users"])
        if hp.get("item_features_shape") is not None and hasattr(model, "set_item_features"):
            model.set_item_features(torch.zeros(tuple(hp["item_features_shape"])))
        model.load_state_dict(model_state(saved))
    except (HydraException, OmegaConfBaseException, RuntimeError, TypeError, KeyError) as err:
        raise CheckpointError(f"checkpoint={str(checkpoint)!r}: its model cannot be rebuilt from its saved "
                              f"hyperparameters and weights ({type(err).__name__}: {err})") from err  # fmt: skip
    return model.eval(), hp


def load_core(
    path: str | Path,
    history: str = "full",
    cache_mb: float = 256.0,
    state_dir: str | Path | None = None,
    fsync: bool = False,
    restore: bool = True,
    **new_users,
) -> ServingCore:
    """A serving core for a run folder or checkpoint.

    ``state_dir`` (default ``<run>/serving``) holds the event journal (``events.jsonl``, replayed here) and
    state snapshots (``states-<checkpoint sha256[:16]>.pt``, restored here when ``restore``). ``new_users``: how a
    ``model.rating_base`` run serves users outside its training data (``ServeOptions``' ``new_users`` and
    ``fold_in_noise``; its defaults when not given).
    """
    run, checkpoint = resolve(path)
    model, hp = load_model(checkpoint)
    core = assemble(run, checkpoint, run_config(run), model, hp, history, cache_mb, **new_users)
    open_state(core, [core], state_dir or default_state_dir(run, checkpoint), fsync, restore)
    return core


def default_state_dir(run: Path | None, checkpoint: Path) -> Path:
    """Where a served run keeps its event journal and snapshots when ``--state-dir`` is not given."""
    return (run or checkpoint.parent) / "serving"


def assemble(
    run: Path | None, checkpoint: Path, cfg: dict, model, hp: dict, history: str, cache_mb: float,
    log: InteractionLog | None = None, **new_users,
) -> ServingCore:  # fmt: skip
    """The core of a loaded model on its run's prepared data (rebuilt with every data option of the run); ``log``:
    an interaction log to share (another run's of the same split), else a new one from the data; ``new_users``:
    ``ServeOptions``' ``new_users`` and ``fold_in_noise`` (``load_core``)."""
    from ss4rec.models.base import SequentialRecommender

    if not isinstance(model, SequentialRecommender):
        raise UserError(f"checkpoint={str(checkpoint)!r} is a {type(model).__name__} run: serving needs a sequential model "
                        "(SS4Rec, GRU4Rec, Mamba4Rec, SASRec); `python -m ss4rec.recommend` exports any run's top items")  # fmt: skip
    data = cfg["data"]
    store, _, _ = prepare(data["name"], data.get("source"), Options.of_run(data), data.get("data_dir"))
    if store.n_items != hp["n_items"]:
        raise CheckpointError(f"the prepared data has {store.n_items} items but the checkpoint {hp['n_items']}")
    if getattr(model, "rating_base", None) is not None and store.n_users != hp["n_users"]:  # its tables are by user index
        raise CheckpointError(f"the prepared data has {store.n_users} users but the checkpoint {hp['n_users']}: a "
                              "model.rating_base run is served on the users it was trained on")  # fmt: skip
    objective = hydra.utils.instantiate(hp["objective"])
    options = ServeOptions(
        max_len=int(data.get("max_len", 200)),
        history=history,
        cache_mb=cache_mb,
        has_rating=bool(objective.uses_rating),
        ranks=bool(objective.uses_ranking),
        rating_range=tuple(float(r) for r in hp.get("rating_range", (1.0, 5.0))),
        **new_users,
        info={"model": cfg.get("model", {}).get("_target_", "").rsplit(".", 1)[-1].lower() or type(model).__name__,
              "data": data["name"], "checkpoint": str(checkpoint), "checkpoint_sha256": sha256(checkpoint),
              "run_dir": None if run is None else str(run)},
    )  # fmt: skip
    if getattr(model, "rating_base", None) is not None:
        from ss4rec.serve.new_user_weights import read_weights

        options.new_user_weights, options.new_user_noises = read_weights(run, checkpoint, options)
    catalogue = Catalogue(store.item_map, store.item_titles, store.item_genres, store.info.get("genres") or ())
    core = ServingCore(model, catalogue, log or InteractionLog.from_store(store), options)
    core.store = store
    return core


def open_state(served, cores: list[ServingCore], state_dir: str | Path, fsync: bool, restore: bool) -> None:
    """Give ``served`` (a core, or an ensemble of ``cores`` on one log) the event journal in ``state_dir``, replay it
    into the log, and (``restore``) each core's snapshot of its checkpoint."""
    state_dir = Path(state_dir)
    served.journal = EventJournal(state_dir / "events.jsonl", fsync=fsync)
    replayed = replay(served, served.journal)
    restored = 0
    for core in cores:
        core.state_dir = state_dir
        if restore:
            restored += restore_states(core)
    log.info("replayed %d events, restored %d user states", replayed, restored)


def replay(core, journal: EventJournal) -> int:
    """Put the journal's events back into the core's log (states rebuild lazily); returns how many."""
    from ss4rec.serve.interactions import Event

    records = journal.read()
    for r in records:
        rating = 0.0 if r.get("rating") is None else float(r["rating"])
        core.log.append(int(r["user_id"]), Event(core.catalogue.lookup(r["item_id"]), int(r["timestamp"]), rating))
    return len(records)
