"""``train(cfg)``: build every object from the composed config, fit, test the best checkpoint, summarise."""

from __future__ import annotations

import logging
import os
import resource
import time
import uuid
from pathlib import Path
from typing import Any

# oneDNN caches a compiled primitive (with its scratch memory) per op shape, up to 1,024 of them; the rating runs' batches
# change shape at every step, so that cache grew a run's memory by 100-250 MB an epoch on ML-100K (13.8 GB and the OOM
# killer after 35 epochs) at no gain in speed. Off unless the user set it; read when the first primitive is built.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")

import hydra  # noqa: E402 - after the oneDNN setting above
import lightning as L  # noqa: E402
import torch
from omegaconf import DictConfig, OmegaConf

from ss4rec.allocator import keep_freed_memory
from ss4rec.callbacks import History, NonFiniteGuard, PlateauResume, RNGState
from ss4rec.checkpoints import AtomicCheckpointIO, atomic_write_json, remove_stale_temporaries
from ss4rec.config_checks import check_train_config
from ss4rec.errors import TrainingFailed, reported_errors, stop_cause
from ss4rec.lightning_module import RecModule
from ss4rec.softmax_memory import check_full_softmax, device_bytes
from ss4rec.warm_start import warm_start

log = logging.getLogger(__name__)

# ${uid:} gives each run folder a unique suffix, so runs started in the same second never share a folder
if not OmegaConf.has_resolver("uid"):
    OmegaConf.register_new_resolver("uid", lambda: uuid.uuid4().hex[:6], use_cache=True)


def choice(cfg: DictConfig, group: str, fallback: str | None = None) -> str | None:
    """Name of the config chosen for ``group`` (e.g. ``model`` -> ``sasrec``), when Hydra runs us."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(group) or fallback
    except Exception:  # composed without Hydra's runtime (plain OmegaConf)
        return fallback


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """Instantiate the data module for the model's training layout, prepared and set up."""
    datamodule = hydra.utils.instantiate(cfg.data)
    model_class = hydra.utils.get_class(cfg.model._target_)
    datamodule.train_format = model_class.layout(cfg.model)
    if datamodule.batch_size is None and getattr(model_class, "default_batch_size", None):
        datamodule.batch_size = model_class.default_batch_size  # the model's own, e.g. I-AutoRec's 256 users
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def check_softmax_memory(cfg: DictConfig, datamodule: Any) -> None:
    """Refuse a full softmax over a catalogue too large for the device; warn when it is big (softmax_memory)."""
    loss = cfg.task.get("ranking_loss")
    per_row = datamodule.train_max_len if datamodule.train_format == "sequence" else 1
    available, where = device_bytes(str(cfg.trainer.get("accelerator", "auto")))
    check_full_softmax(loss.get("_target_") if loss else None, datamodule.train_batch_size * per_row,
                       datamodule.n_items, available, where)


def build_module(cfg: DictConfig, datamodule: Any) -> RecModule:
    """The LightningModule, from resolved plain configs so checkpoints reload with no arguments."""
    genres = getattr(datamodule, "item_genres", None)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model_class = hydra.utils.get_class(cfg.model._target_)
    timed = getattr(model_class, "uses_time_index", False)
    if timed:  # timeSVD++: a table per user-day of the training part, sized here and filled below
        users, times = datamodule.training_times()
        model["n_user_days"] = model_class.count_user_days(users, times)
    module = RecModule(
        model=model,
        objective=OmegaConf.to_container(cfg.task.objective, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        n_items=datamodule.n_items,
        n_users=datamodule.n_users,
        rating_mean=float(datamodule.rating_mean),
        rating_range=tuple(float(r) for r in datamodule.rating_range),
        ks=tuple(cfg.evaluation.ks),
        mask_seen=bool(cfg.evaluation.mask_seen),
        eval_chunk_size=int(cfg.evaluation.chunk_size),
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        item_features_shape=tuple(genres.shape) if genres is not None else None,
        monitor=str(cfg.task.monitor),
        mode=str(cfg.task.mode),
        target_weighting=str(cfg.task.get("target_weighting", "batch")),
    )
    if genres is not None and hasattr(module.model, "set_item_features"):
        module.model.set_item_features(genres.float())
    if timed:
        module.model.set_time_index(users, times)
    if getattr(model_class, "uses_rating_matrix", False):  # I-AutoRec: the training ratings are its input
        module.model.set_rating_matrix(*datamodule.training_ratings())
    return module


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[L.Callback]:
    """The configured callbacks, then the ones every run has: the non-finite guard, the RNG state and the
    plateau scheduler's resume step."""
    callbacks: list[L.Callback] = []
    if cfg.get("stop_on_nonfinite", True):
        callbacks.append(NonFiniteGuard())  # first, so it sees a bad validation metric before the others
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None or "_target_" not in spec:
            continue
        if name == "lr_monitor" and not has_logger:
            continue  # LearningRateMonitor refuses to run without a logger
        if name == "progress_bar" and not cfg.trainer.get("enable_progress_bar", True):
            continue  # the Trainer refuses a progress bar callback when bars are off
        callback = hydra.utils.instantiate(spec)
        if cfg.get("ckpt_path") and isinstance(callback, L.pytorch.callbacks.ModelCheckpoint):
            # a resumed run keeps writing into the checkpoint's folder, so that the best checkpoint so far
            # (and its score) carry over, exactly as if the run had never stopped
            callback.dirpath = str(Path(cfg.ckpt_path).expanduser().resolve().parent)
            for path in remove_stale_temporaries(callback.dirpath):
                log.info("removed %s, left by a save that was killed", path)
        callbacks.append(callback)
    callbacks += [RNGState(), PlateauResume()]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(spec) for spec in (cfg.get("logger") or {}).values() if spec and "_target_" in spec]


def peak_memory_mb() -> float:
    """Peak GPU memory allocated by torch when on CUDA, else the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain data, interpolations resolved, without Hydra's own node."""
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in cfg.items() if k != "hydra"}


def _floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint and write ``metrics.json`` into ``cfg.paths.output_dir``.

    Returns the summary written to ``metrics.json`` (see README, "Run outputs").
    """
    check_train_config(cfg)  # every option, before any data is read or model built
    started = time.time()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    keep_freed_memory()  # large per-step tensors reused, not page-faulted in again at every step

    datamodule = build_datamodule(cfg)
    check_softmax_memory(cfg, datamodule)
    module = build_module(cfg, datamodule)
    freeze = bool(cfg.get("init_freeze", False))  # a resumed run copies again to freeze the same; the checkpoint then restores every weight
    started_from = warm_start(module.model, cfg.init_from, freeze) if cfg.get("init_from") and (freeze or not cfg.get("ckpt_path")) else None
    base = getattr(module.model, "rating_base", None)
    if base is not None and not cfg.get("ckpt_path"):
        base.fill(datamodule.store)  # a new run reads the base run's tables; a resumed one gets them from its checkpoint
    loggers = build_loggers(cfg)
    history = History(started)
    callbacks = [*build_callbacks(cfg, has_logger=bool(loggers)), history]
    trainer_overrides: dict[str, Any] = {}
    if not module.model.learns_by_gradient:
        trainer_overrides["max_epochs"] = 1  # counting models see every interaction once
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()],
        **trainer_overrides,
    )
    for lg in loggers:
        lg.log_hyperparams(resolved(cfg))

    summary: dict[str, Any] = {
        "model": choice(cfg, "model", type(module.model).__name__.lower()),
        "data": str(cfg.data.get("name", choice(cfg, "data"))),
        "task": str(cfg.task.name),
        "experiment": choice(cfg, "experiment"),
        "seed": int(cfg.seed),
        "mask_seen": bool(cfg.evaluation.mask_seen),
        "monitor": str(cfg.task.monitor),
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "run_dir": str(run_dir.resolve()),
        "status": "running",
    }
    if started_from is not None:
        summary["initialised_from"] = started_from
    if cfg.get("ckpt_path"):  # completed below with the epoch it resumed at
        summary["resumed_from"] = {"checkpoint": str(Path(cfg.ckpt_path).expanduser().resolve())}
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        summary["train_time_s"] = history.train_seconds  # before testing reloads the best checkpoint's state
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        summary["checkpoint"] = best or None
        # snapshot now: testing a checkpoint restores callback states, which would rewind the history
        summary["history"] = history.history
        if cfg.get("test_after_training", True):
            results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
            summary["test"] = _floats(results[0]) if results else {}
        summary["status"] = "interrupted" if trainer.interrupted else "finished"
    except BaseException as error:
        # a signal (kill, Ctrl-C, the end of a batch job's time) stops a run; it did not fail
        cause = stop_cause(error)
        summary["status"] = "stopped" if cause is not None else "failed"
        shown = error if cause is None else cause
        summary["reason"] = str(error) if isinstance(error, TrainingFailed) else f"{type(shown).__name__}: {shown}"
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None:  # the last good weights (the guard never lets bad ones be written)
            summary["checkpoint"] = checkpoint.best_model_path or None
            summary["last_checkpoint"] = checkpoint.last_model_path or None
            if checkpoint.last_model_path:
                summary["resume"] = f"the same command with ckpt_path={checkpoint.last_model_path}"
        raise
    finally:
        summary["epochs"] = int(trainer.current_epoch)
        if "resumed_from" in summary:
            summary["resumed_from"]["epoch"] = history.first_epoch  # None: stopped before training began
        summary.setdefault("history", history.history)
        # finished or not, the record says where the run stood
        summary["best_val"] = _best_val(summary["history"], cfg.task.monitor, cfg.task.mode)
        summary["best_epoch"] = summary["best_val"].pop("epoch", None)
        summary["wall_time_s"] = time.time() - started
        summary["peak_memory_mb"] = peak_memory_mb()
        summary["config"] = resolved(cfg)
        if trainer.is_global_zero:
            atomic_write_json(run_dir / "metrics.json", summary)  # a kill never leaves half a file
            _print_summary(summary, run_dir / "metrics.json")
        for lg in loggers:
            if hasattr(lg, "experiment") and type(lg).__name__ == "WandbLogger":
                lg.experiment.finish()  # one W&B run per job, also in multirun
    return summary


def _print_summary(summary: dict[str, Any], path: Path) -> None:
    tested = summary.get("test") or {}
    if tested:
        rows = "\n".join(f"  {name:<14} {value:.4f}" for name, value in tested.items())
        log.info("test metrics of the best checkpoint (%s, %s):\n%s", summary["model"], summary["data"], rows)
    log.info("run %s after %d epochs, %.0f s; summary: %s", summary["status"], summary["epochs"],
             summary["wall_time_s"], path.resolve())


def _best_val(history: list[dict[str, float]], monitor: str, mode: str) -> dict[str, float]:
    """The ``val/...`` metrics (and ``epoch``) of the epoch with the best monitored value."""
    rows = [r for r in history if monitor in r]
    if not rows:
        return {}
    pick = max if mode == "max" else min
    best = pick(rows, key=lambda r: r[monitor])
    return {k: v for k, v in best.items() if k.startswith("val/") or k == "epoch"}


def run(cfg: DictConfig) -> float | None:
    """``train.py``'s job: check the options, train, return the value a sweeper optimises.

    Bad input exits with status 2 and ``error: <message>``; a failed run (e.g. a NaN loss) exits with
    status 1, except under a multirun, where the exception goes to the sweeper, which records the job as
    failed (Optuna: a FAIL trial, never a score), runs the other jobs and exits with status 1 at the end.
    """

    def in_sweep(error: BaseException) -> bool:
        return isinstance(error, TrainingFailed) and _multirun()

    with reported_errors(reraise=in_sweep):
        return optimized_metric(cfg, train(cfg))


def _multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # composed without Hydra's runtime
        return False


def optimized_metric(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The value a Hydra sweeper optimises: the best validation value of ``cfg.task.monitor``."""
    value = summary.get("best_val", {}).get(str(cfg.task.monitor))
    return None if value is None else float(value)
