"""Check every user-facing option at start-up, before any data is read or any model is built.

``check_train_config(cfg)`` (``train.py``), ``check_data_config(cfg)`` (``python -m ss4rec.data``) raise one
:class:`~ss4rec.errors.ConfigError` listing every problem, one per line, as
``<key>=<value>: expected <what is allowed>``. ``ss4rec.compare`` runs ``check_train_config`` on the config
of every job it plans, before it trains anything.

The rules are declarative: a rule per option name (``hidden``, ``dropout``, ``batch_size``, ...) and, for
options a class receives (model, data module, Trainer), a check that the name is one its constructor takes.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ss4rec.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]  # (accepts the value?, what is allowed)


# ---- value rules -------------------------------------------------------------------------------------
def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT: Rule = (lambda v: _int(v) and v >= 1, "a positive integer")
NON_NEGATIVE_INT: Rule = (lambda v: _int(v) and v >= 0, "an integer >= 0")
POSITIVE_INT_OR_NULL: Rule = (lambda v: v is None or (_int(v) and v >= 1), "a positive integer or null")
POSITIVE_NUMBER: Rule = (lambda v: _number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE_NUMBER: Rule = (lambda v: _number(v) and v >= 0, "a finite number >= 0")
PROBABILITY: Rule = (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
BOOL: Rule = (lambda v: isinstance(v, bool), "true or false")
STRING: Rule = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
STRING_OR_NULL: Rule = (lambda v: v is None or (isinstance(v, str) and v != ""), "a path or null")
SEED: Rule = (lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)")
BATCH_LIMIT: Rule = (
    lambda v: (_int(v) and v >= 0) or (_number(v) and isinstance(v, float) and 0.0 <= v <= 1.0),
    "an integer >= 0 (batches) or a float in [0.0, 1.0] (fraction)",
)


def one_of(*values: Any) -> Rule:
    return (lambda v: v in values and not isinstance(v, bool), "one of " + ", ".join(map(str, values)))


def show(value: Any) -> str:
    """A value as the user would type it in an override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=False)
    return str(value)


class Problems(list):
    """The problems found so far; ``check`` adds one when a rule rejects a value."""

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.append(f"{key}={show(value)}: expected {allowed}")

    def check(self, key: str, value: Any, rule: Rule) -> bool:
        accepts, allowed = rule
        try:
            ok = bool(accepts(value))
        except TypeError:
            ok = False
        if not ok:
            self.add(key, value, allowed)
        return ok

    def raise_if_any(self, hint: str | None = None) -> None:
        if self:
            raise ConfigError(list(self), hint=hint)


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` resolved; an interpolation that cannot resolve reads as its error (a problem)."""
    if cfg is None or key not in cfg:
        return default
    return cfg[key]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


# ---- classes: the option names their constructor takes -----------------------------------------------
def _import(target: str) -> Any | None:
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _check_target(problems: Problems, group: str, cfg: Mapping, skip: tuple[str, ...] = ()) -> Any | None:
    """Import ``cfg._target_`` and check that every other key is an argument of it; return the class."""
    target = _get(cfg, "_target_")
    cls = _import(target) if isinstance(target, str) else None
    if cls is None:
        problems.add(f"{group}._target_", target, "an importable class (module.Class)")
        return None
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return cls
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return cls
    known = set(parameters) - set(skip)
    for key in cfg:
        if not str(key).startswith("_") and key not in known:
            problems.append(f"{group}.{key}: unknown option of {cls.__name__}; known: {', '.join(sorted(known))}")
    return cls


# ---- groups -----------------------------------------------------------------------------------------
MODEL_RULES: dict[str, Rule] = {
    **dict.fromkeys(("hidden", "n_layers", "d_state", "mamba_d_state", "d_conv", "expand", "inner", "n_heads",
                     "dim", "latent", "max_len"), POSITIVE_INT),  # fmt: skip
    "gru_hidden": POSITIVE_INT_OR_NULL,
    "total_anneal_steps": NON_NEGATIVE_INT,
    **dict.fromkeys(("rating_base_drift", "rating_base_drift_recent"), NON_NEGATIVE_INT),
    **dict.fromkeys(("dropout", "attention_dropout", "rating_dropout"), PROBABILITY),
    **dict.fromkeys(("s5_dt_min", "s5_dt_max", "min_gap_seconds", "init_std", "rating_base_drift_lr_scale"),
                    POSITIVE_NUMBER),
    **dict.fromkeys(("l2", "anneal_cap"), NON_NEGATIVE_NUMBER),
    **dict.fromkeys(("use_time", "use_ratings", "single_layer_residual", "rating_item_bias", "rating_profile",
                     "rating_base_residuals", "s5_clip_eigs", "rating_base_drift_calibrate", "ffn"), BOOL),
    "time_unit": one_of("second", "minute", "hour", "day"),
    "time_transform": one_of("raw", "log1p"),
    "zero_gap": one_of("keep", "floor"),
    "target_time": one_of("known", "unknown"),
    "blocks": one_of("both", "s5_only", "mamba_only"),
    "init": one_of("official", "mamba"),
    "batches": one_of("users", "items"),
    "rating_base": STRING_OR_NULL,
    "rating_base_heldout": STRING_OR_NULL,
    "mlp_hidden": (lambda v: isinstance(v, list) and v and all(_int(x) and x >= 1 for x in v),
                   "a non-empty list of positive integers"),  # fmt: skip
}


def check_model(problems: Problems, model: Mapping) -> Any | None:
    cls = _check_target(problems, "model", model, skip=("n_items", "n_users"))
    for key, rule in MODEL_RULES.items():
        if key in model:
            problems.check(f"model.{key}", _plain(model[key]), rule)
    hidden, heads = _get(model, "hidden"), _get(model, "n_heads")
    if _int(hidden) and _int(heads) and hidden >= 1 and heads >= 1 and hidden % heads:
        problems.add("model.n_heads", heads, f"a divisor of model.hidden={hidden}")
    low, high = _get(model, "s5_dt_min"), _get(model, "s5_dt_max")
    if _number(low) and _number(high) and low > high:
        problems.add("model.s5_dt_max", high, f"a value >= model.s5_dt_min={low}")
    return cls


DATA_RULES: dict[str, Rule] = {
    "name": STRING,
    "max_len": POSITIVE_INT,
    "batch_size": POSITIVE_INT_OR_NULL,
    "eval_batch_size": POSITIVE_INT,
    "num_workers": NON_NEGATIVE_INT,
    "pin_memory": BOOL,
    "persistent_workers": BOOL,
    "k_core": NON_NEGATIVE_INT,
    "duplicates": one_of("keep_all", "keep_first", "keep_last", "error"),
    "train_max_len": POSITIVE_INT_OR_NULL,
    "train_stride": POSITIVE_INT_OR_NULL,
    "fixed_length": BOOL,
    "length_pool": NON_NEGATIVE_INT,
    "holdout_folds": NON_NEGATIVE_INT,
    "holdout_fold": NON_NEGATIVE_INT,
    "holdout_last": NON_NEGATIVE_INT,
    "user_sample": NON_NEGATIVE_INT,
    "user_sample_seed": NON_NEGATIVE_INT,
    "seed": SEED,
    "data_dir": STRING_OR_NULL,
}


def check_data(problems: Problems, data: Mapping) -> None:
    """The data module's options and its source (kind and option names, a local file that exists)."""
    _check_target(problems, "data", data, skip=("train_format",))
    for key, rule in DATA_RULES.items():
        if key in data:
            problems.check(f"data.{key}", _get(data, key), rule)
    stride, max_len, window = _get(data, "train_stride"), _get(data, "max_len"), _get(data, "train_max_len")
    window_key = "data.train_max_len" if window is not None else "data.max_len"
    window = window if window is not None else max_len
    if _int(stride) and _int(window) and stride > window >= 1:
        problems.add("data.train_stride", stride, f"null or at most {window_key}={window}")
    folds, fold = _get(data, "holdout_folds", 0), _get(data, "holdout_fold", 0)
    if _int(folds) and folds > 0 and _int(fold) and fold >= folds:
        problems.add("data.holdout_fold", fold, f"a fold in 0..{folds - 1} (data.holdout_folds={folds})")
    if problems:
        return  # the source check needs a valid name
    from ss4rec.data.errors import DataError
    from ss4rec.data.sources import build_source

    source = _plain(_get(data, "source"))
    try:
        build_source(str(data["name"]), source, Path(_get(data, "data_dir") or "."))  # names only, reads nothing
    except DataError as err:
        problems.append(f"data.source: {err}")
        return
    if isinstance(source, dict) and source.get("kind") == "path":
        path = Path(str(source["path"])).expanduser()
        if not path.is_file():
            problems.add("data.source.path", str(path), "an existing ratings file" +
                         (" (it is a directory)" if path.is_dir() else " (no such file)"))  # fmt: skip


def check_holdout(problems: Problems, data: Mapping, model: Mapping) -> None:
    """``data.holdout_folds`` > 0 trains a cross-fitted rating base: only ``mf``, ``svdpp``, ``timesvdpp`` and ``autorec`` read it."""
    from ss4rec.models.rating_base import BASE_TARGETS

    folds = _get(data, "holdout_folds", 0)
    if _int(folds) and folds > 0 and _get(model, "_target_") not in BASE_TARGETS:
        problems.add("data.holdout_folds", folds, f"0 with model {_get(model, '_target_')} (a held-out fold is for "
                     "the mf, svdpp, timesvdpp and autorec runs of a cross-fitted model.rating_base)")  # fmt: skip


def check_positions(problems: Problems, data: Mapping, model: Mapping, model_cls: Any) -> None:
    """A model with one learned embedding per position (SASRec) must cover the training window."""
    if not getattr(model_cls, "learned_positions", False):
        return
    window, positions = _get(data, "train_max_len"), _get(model, "max_len")
    if _int(window) and _int(positions) and window > positions:
        problems.add("model.max_len", positions,
                     f"at least data.train_max_len={window} (the model learns one embedding per position)")


#: data options that only change how batches are cut, not which ratings are trained, validated and tested
LOADER_ONLY_DATA = frozenset({
    "_target_", "_convert_", "max_len", "batch_size", "eval_batch_size", "num_workers", "pin_memory",
    "persistent_workers", "train_max_len", "train_stride", "train_windows", "fixed_length", "length_pool",
    "seed", "data_dir", "holdout_folds", "holdout_fold",  # the held-out fold: which training ratings a run fits
})  # fmt: skip


def _split_options(data: Mapping) -> dict:
    """The data options that decide the split: all but ``LOADER_ONLY_DATA`` and a download's progress bar."""
    out = {key: value for key, value in data.items() if key not in LOADER_ONLY_DATA}
    if isinstance(out.get("source"), Mapping):
        out["source"] = {key: value for key, value in out["source"].items() if key != "progress"}
    return out


def check_rating_base(problems: Problems, cfg: DictConfig) -> None:
    """``model.rating_base``: an ``mf``, ``svdpp``, ``timesvdpp`` or ``autorec`` run (or checkpoint) trained on the same split, or the K runs of
    a cross-fitting, used by a rating task; ``model.rating_base_heldout``: a run on every training rating beside a
    cross-fitted base. Not read when resuming (``ckpt_path``): the checkpoint holds the MF tables."""
    path, heldout = _get(cfg.model, "rating_base"), _get(cfg.model, "rating_base_heldout")
    recent = _get(cfg.model, "rating_base_drift_recent")
    if recent and not _get(cfg.model, "rating_base_drift"):
        problems.add("model.rating_base_drift_recent", recent, "0 without model.rating_base_drift (the drift term whose "
                     "weight it splits for each user's last ratings)")  # fmt: skip
    if _get(cfg.model, "rating_base_drift_calibrate") and not recent:
        problems.add("model.rating_base_drift_calibrate", True, "false without model.rating_base_drift_recent (the last "
                     "training targets of each user it holds out from the network)")  # fmt: skip
    if path is None:
        if _get(cfg.model, "rating_base_residuals"):
            problems.add("model.rating_base_residuals", True, "false without model.rating_base (the MF, SVD++ or timeSVD++ run whose errors it reads)")
        if heldout is not None:
            problems.add("model.rating_base_heldout", heldout, "null without a cross-fitted model.rating_base (whose runs' mean it replaces)")
        if _get(cfg.model, "rating_base_drift"):
            problems.add("model.rating_base_drift", _get(cfg.model, "rating_base_drift"),
                         "0 without model.rating_base (the MF, SVD++ or timeSVD++ run whose errors it averages)")  # fmt: skip
        return
    if not _get(cfg.task, "rating_weight", 0.0):
        problems.add("model.rating_base", path, "null with task=ranking (the base only changes predicted ratings)")
        return
    if _get(cfg, "ckpt_path"):
        return
    from ss4rec.models.rating_base import RatingBaseError, cross_fitting

    runs = _base_runs(problems, cfg, "model.rating_base", path)
    if runs is None:
        return
    if heldout is not None:
        if len(runs) == 1:
            problems.add("model.rating_base_heldout", heldout, "null with a single model.rating_base run (it replaces the "
                         "mean of a cross-fitted base's K runs: data.holdout_folds)")  # fmt: skip
            return
        heldout_runs = _base_runs(problems, cfg, "model.rating_base_heldout", heldout)
        if heldout_runs is None:
            return
        if len(heldout_runs) != 1 or (heldout_runs[0][1].get("data") or {}).get("holdout_folds"):
            problems.add("model.rating_base_heldout", heldout, "one run trained on every training rating "
                         "(data.holdout_folds=0)")  # fmt: skip
            return
    try:
        cross_fitting(path, [config for _, config in runs])
    except RatingBaseError as err:
        problems.append(str(err))


def check_init_from(problems: Problems, cfg: DictConfig) -> None:
    """``init_from``: a run (or a checkpoint in its ``checkpoints/`` folder) of the same model class on this run's
    split, so that its weights fit and never saw a rating this run holds out. Not read when resuming (the
    checkpoint resumed from holds the weights) unless ``init_freeze`` needs to know which ones it copied."""
    path = _get(cfg, "init_from")
    if not isinstance(path, str) or not path or (_get(cfg, "ckpt_path") and _get(cfg, "init_freeze", False) is not True):
        return
    from ss4rec.paths import checkpoint_run
    from ss4rec.serve.loading import config_problem, run_config
    from ss4rec.warm_start import InitFromError, init_checkpoint

    try:
        checkpoint = init_checkpoint(path)
    except InitFromError as err:
        problems.append(str(err))
        return
    run = checkpoint_run(checkpoint)
    if config_problem(run, checkpoint) is not None:
        problems.append(f"init_from={path!r}: no run config (metrics.json or .hydra/config.yaml) in {run or checkpoint.parent}, "
                        "so its model and data split cannot be checked; pass the run's folder")  # fmt: skip
        return
    saved = run_config(run)
    theirs, ours = (saved.get("model") or {}).get("_target_"), _get(cfg.model, "_target_")
    if theirs != ours:
        problems.add("init_from", path, f"a run of this model ({ours}); it trained {theirs}")
        return
    differ = split_differences(cfg, saved.get("data") or {}, "that run")
    if differ:
        problems.append(f"init_from={path!r} was trained on another split (its weights would have seen ratings this "
                        "run holds out):\n  " + "\n  ".join(differ))  # fmt: skip


def split_differences(cfg: DictConfig, saved_data: Mapping, who: str, here: str = "here") -> list[str]:
    """Each data option deciding the split that differs between another run's config and this run's (``here``:
    how the messages name this run)."""
    ours, theirs = _split_options(_plain(cfg.data)), _split_options(saved_data)
    added = _constructor_defaults(_get(cfg.data, "_target_"))
    return [f"data.{key}: {show(theirs.get(key))} in {who}, {show(ours.get(key))} {here}"
            for key in sorted(set(ours) | set(theirs)) if _differs(key, theirs, ours, added)]  # fmt: skip


def _base_runs(problems: Problems, cfg: DictConfig, option: str, path: str) -> list[tuple[Path, dict]] | None:
    """The run folders ``path`` names, with their configs, each an mf, svdpp, timesvdpp or autorec run on this run's split; None (with
    the problem added) when one is not."""
    from ss4rec.models.rating_base import BASE_TARGETS, RatingBaseError, base_paths, mf_checkpoint
    from ss4rec.paths import checkpoint_run
    from ss4rec.serve.loading import config_problem, run_config

    runs = []
    try:
        paths = base_paths(path)
        for each in paths:
            checkpoint = mf_checkpoint(each)
            run = checkpoint_run(checkpoint)
            if config_problem(run, checkpoint) is not None:
                problems.append(f"{option}={path!r}: no run config (metrics.json or .hydra/config.yaml) in "
                                f"{run or checkpoint.parent}, "
                                "so its data split cannot be checked; pass the base run's folder")  # fmt: skip
                return None
            runs.append((each, run_config(run)))
    except RatingBaseError as err:
        problems.append(str(err.naming(option)))
        return None
    for each, saved in runs:
        shown = path if len(paths) == 1 else f"{path} ({each})"
        if (saved.get("model") or {}).get("_target_") not in BASE_TARGETS:
            problems.add(option, shown, f"an mf, svdpp, timesvdpp or autorec run (model=mf|svdpp|timesvdpp|autorec task=rating); {each} "
                         f"trained {(saved.get('model') or {}).get('_target_')}")  # fmt: skip
            return None
        differ = split_differences(cfg, saved.get("data") or {}, "the base run")
        if differ:
            problems.append(f"{option}={shown!r} was trained on another split:\n  " + "\n  ".join(differ))
            return None
    return runs


def _layout(model_cls: Any, model: Mapping) -> str | None:
    """The training batches ``model_cls`` built from ``model`` trains on (``Recommender.layout``); the class's
    ``train_format`` when the options that pick it are bad (``check_model`` reports those)."""
    try:
        return model_cls.layout(model)
    except (ValueError, AttributeError):
        return getattr(model_cls, "train_format", None)


def check_task(problems: Problems, task: Mapping, model_cls: Any, ks: list, model: Mapping) -> None:
    problems.check("task.mode", _get(task, "mode"), one_of("min", "max"))
    problems.check("task.target_weighting", _get(task, "target_weighting", "batch"), one_of("batch", "uniform"))
    weight = _get(task, "rating_weight", 0.0)
    problems.check("task.rating_weight", weight, NON_NEGATIVE_NUMBER)
    ranking = _get(task, "ranking_loss")
    if ranking is not None:
        if _check_target(problems, "task.ranking_loss", ranking) is not None and "n_negatives" in ranking:
            problems.check("task.ranking_loss.n_negatives", ranking["n_negatives"], POSITIVE_INT)
    uses_rating = _number(weight) and weight > 0
    recent, recent_weight = _get(task, "rating_recent_targets", 0), _get(task, "rating_recent_weight", 1.0)
    problems.check("task.rating_recent_targets", recent, NON_NEGATIVE_INT)
    problems.check("task.rating_recent_weight", recent_weight, POSITIVE_NUMBER)
    if _int(recent) and recent > 0:
        if not uses_rating:
            problems.add("task.rating_recent_targets", recent, "0 without a rating loss (task.rating_weight > 0)")
        elif model_cls is not None and (layout := _layout(model_cls, model)) != "sequence":  # batch.SEQUENCE
            problems.add("task.rating_recent_targets", recent, f"0 with {model_cls.__name__}, which trains on "
                         f"{layout} batches (only sequence models know each target's place)")  # fmt: skip
    if ranking is None and not uses_rating:
        problems.add("task.rating_weight", weight, "> 0 when task.ranking_loss is null (nothing to train)")
    if model_cls is not None:
        name = model_cls.__name__
        if ranking is not None and not getattr(model_cls, "supports_ranking", True):
            problems.append(f"task={task.get('name')}: {name} cannot rank items; expected task=rating")
        if uses_rating and not getattr(model_cls, "supports_rating", True):
            problems.append(f"task={task.get('name')}: {name} does not predict ratings; expected task=ranking")
    logged = []
    if ranking is not None:
        logged += [f"val/{m}@{k}" for k in ks if _int(k) for m in ("hr", "ndcg", "mrr")]
    if uses_rating:
        logged += ["val/rmse", "val/mae"]
    problems.check("task.monitor", _get(task, "monitor"), (lambda v: v in logged, "one of " + ", ".join(logged)))


PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "16", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
TRAINER_RULES: dict[str, Rule] = {
    "max_epochs": (lambda v: v is None or (_int(v) and (v >= 1 or v == -1)), "a positive integer, -1 or null"),
    "min_epochs": (lambda v: v is None or (_int(v) and v >= 0), "an integer >= 0 or null"),
    "accelerator": one_of(*ACCELERATORS),
    "devices": (lambda v: v == "auto" or (_int(v) and (v >= 1 or v == -1)) or
                (isinstance(v, list) and v and all(_int(x) and x >= 0 for x in v)),
                "auto, a positive integer, -1 or a list of device indices"),  # fmt: skip
    # null when trainer=slurm runs without its launcher (it reads ${hydra:launcher.nodes})
    "num_nodes": (lambda v: _int(v) and v >= 1,
                  "a positive integer (trainer=slurm takes it from hydra/launcher=slurm: add -m hydra/launcher=slurm)"),
    "precision": (lambda v: str(v) in PRECISIONS, "one of " + ", ".join(PRECISIONS)),
    "gradient_clip_val": (lambda v: v is None or (_number(v) and v >= 0), "null or a finite number >= 0"),
    "gradient_clip_algorithm": (lambda v: v in (None, "norm", "value"), "null, norm or value"),
    "check_val_every_n_epoch": POSITIVE_INT_OR_NULL,
    "log_every_n_steps": POSITIVE_INT,
    "accumulate_grad_batches": POSITIVE_INT,
    "num_sanity_val_steps": (lambda v: _int(v) and v >= -1, "an integer >= -1"),
    "deterministic": (lambda v: isinstance(v, bool) or v == "warn", "true, false or warn"),
    "fast_dev_run": (lambda v: isinstance(v, bool) or (_int(v) and v >= 0), "true, false or a number of batches"),
    "enable_progress_bar": BOOL,
    "enable_checkpointing": BOOL,
    **dict.fromkeys(("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"),
                    BATCH_LIMIT),  # fmt: skip
}


def check_trainer(problems: Problems, trainer: Mapping) -> None:
    _check_target(problems, "trainer", trainer, skip=("callbacks", "logger", "plugins"))
    for key, rule in TRAINER_RULES.items():
        if key in trainer:
            problems.check(f"trainer.{key}", _plain(trainer[key]), rule)
    if _get(trainer, "accelerator") in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.add("trainer.accelerator", trainer["accelerator"],
                         "cpu or auto: no GPU is visible here (torch.cuda.is_available() is False)")  # fmt: skip


def check_callbacks(problems: Problems, callbacks: Mapping | None) -> None:
    for name, spec in (callbacks or {}).items():
        if spec is None or "_target_" not in spec:
            continue
        _check_target(problems, f"callbacks.{name}", spec)
        if "patience" in spec:
            problems.check(f"callbacks.{name}.patience", spec["patience"], NON_NEGATIVE_INT)
        if "min_delta" in spec:
            problems.check(f"callbacks.{name}.min_delta", spec["min_delta"], NON_NEGATIVE_NUMBER)
        if "save_top_k" in spec:
            problems.check(f"callbacks.{name}.save_top_k", spec["save_top_k"],
                           (lambda v: _int(v) and v >= -1, "an integer >= -1"))  # fmt: skip
        for key in ("every_n_train_steps", "train_time_interval"):
            if spec.get(key):
                problems.add(f"callbacks.{name}.{key}", _plain(spec[key]),
                             "null or 0: checkpoints are written at epoch ends only, the points a run resumes "
                             "from exactly (README, 'Failures, validation and resuming')")  # fmt: skip


def check_optimisation(problems: Problems, cfg: Mapping) -> None:
    optimizer = _get(cfg, "optimizer")
    if not isinstance(optimizer, Mapping) or "_target_" not in optimizer:
        problems.add("optimizer", optimizer, "a config with _target_ (e.g. torch.optim.Adam) and _partial_: true")
    else:
        _check_target(problems, "optimizer", optimizer, skip=("params",))
        if "lr" in optimizer:
            problems.check("optimizer.lr", optimizer["lr"], POSITIVE_NUMBER)
    problems.check("weight_decay", _get(cfg, "weight_decay", 0.0), NON_NEGATIVE_NUMBER)
    scheduler = _get(cfg, "scheduler")
    if scheduler is not None:
        if not isinstance(scheduler, Mapping) or "_target_" not in scheduler:
            problems.add("scheduler", scheduler, "null or a config with _target_ and _partial_: true")
        else:
            _check_target(problems, "scheduler", scheduler, skip=("optimizer",))


def check_evaluation(problems: Problems, evaluation: Mapping) -> list:
    ks = _plain(_get(evaluation, "ks", [10]))
    problems.check("evaluation.ks", ks, (lambda v: isinstance(v, list) and v and all(_int(k) and k >= 1 for k in v),
                                         "a non-empty list of positive integers"))  # fmt: skip
    problems.check("evaluation.mask_seen", _get(evaluation, "mask_seen", False), BOOL)
    problems.check("evaluation.chunk_size", _get(evaluation, "chunk_size", 8192), POSITIVE_INT)
    return ks if isinstance(ks, list) else []


def _resolving(problems: Problems, cfg: DictConfig) -> bool:
    """Resolve every interpolation once; a broken one is a problem (``${data.max_len}`` of a missing key)."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        problems.append(f"{key}: {str(err).splitlines()[0]}")
        return False
    return True


def _without_hydra(cfg: DictConfig) -> DictConfig:
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg


def _runs_hint(cfg: DictConfig) -> str | None:
    """Where an experiment that names other runs (``init_from``, ``model.rating_base``) says how to make them."""
    from ss4rec.paths import CONFIG_DIR

    name = _get(cfg, "experiment_name")
    if not isinstance(name, str):
        return None
    path = CONFIG_DIR / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return None
    text = path.read_text()
    if "init_from:" not in text and "rating_base:" not in text:
        return None
    return f"experiment={name} reads these runs of its seed: the header of {path} has the commands that make them"


def check_train_config(cfg: DictConfig, check_checkpoint: bool = True) -> None:
    """Every option of ``train.py``; raise ConfigError (or CheckpointError for ``ckpt_path``)."""
    problems = Problems()
    if not _resolving(problems, _without_hydra(cfg)):
        problems.raise_if_any()
    problems.check("seed", _get(cfg, "seed"), SEED)
    problems.check("threads", _get(cfg, "threads"), POSITIVE_INT_OR_NULL)
    for key in ("test_after_training", "stop_on_nonfinite"):
        if key in cfg:
            problems.check(key, cfg[key], BOOL)
    ckpt = _get(cfg, "ckpt_path")
    problems.check("ckpt_path", ckpt, STRING_OR_NULL)
    problems.check("init_from", _get(cfg, "init_from"), STRING_OR_NULL)
    problems.check("init_freeze", _get(cfg, "init_freeze", False), BOOL)
    if _get(cfg, "init_freeze", False) is True and not _get(cfg, "init_from"):
        problems.add("init_freeze", True, "false without init_from (the run whose copied weights it keeps fixed)")
    check_data(problems, cfg.data)
    model_cls = check_model(problems, cfg.model)
    check_positions(problems, cfg.data, cfg.model, model_cls)
    check_holdout(problems, cfg.data, cfg.model)
    ks = check_evaluation(problems, cfg.evaluation)
    check_task(problems, cfg.task, model_cls, ks, cfg.model)
    check_trainer(problems, cfg.trainer)
    check_callbacks(problems, _get(cfg, "callbacks"))
    check_optimisation(problems, cfg)
    problems.raise_if_any()
    check_rating_base(problems, cfg)
    check_init_from(problems, cfg)
    if problems:
        problems.raise_if_any(hint=_runs_hint(cfg))
    if ckpt and check_checkpoint:
        from ss4rec.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(ckpt)  # CheckpointError when it is not a readable Lightning checkpoint
        check_resume_matches(ckpt, checkpoint, cfg)


def check_resume_matches(path: str, checkpoint: dict, cfg: DictConfig) -> None:
    """The run resumed from ``checkpoint`` must build the same model and objective (else the weights do not fit)."""
    from ss4rec.errors import CheckpointError

    saved = checkpoint.get("hyper_parameters") or {}
    differences = []
    for group, now in (("model", _plain(cfg.model)), ("task.objective", _plain(cfg.task.objective))):
        before = saved.get(group.split(".")[-1])
        if not isinstance(before, dict):
            continue
        added = _constructor_defaults(now.get("_target_"))
        for key in sorted(set(before) | set(now)):
            if _differs(key, before, now, added):
                differences.append(f"{group}.{key}: {show(before.get(key))} in the checkpoint, {show(now.get(key))} now")
    weighting, trained = str(cfg.task.get("target_weighting", "batch")), saved.get("target_weighting", "batch")
    if saved and trained != weighting:  # absent: saved before the option, when every run weighed by batch means
        differences.append(f"task.target_weighting: {trained} in the checkpoint, {weighting} now")
    scheduler = _plain(cfg.scheduler) if cfg.get("scheduler") else None
    if checkpoint.get("lr_schedulers") and saved.get("scheduler") != scheduler:
        # PyTorch restores a scheduler's settings (patience, factor, ...) with its state: the new ones would be ignored
        differences.append(
            f"scheduler: {show(saved.get('scheduler'))} in the checkpoint, {show(scheduler)} now (a restored scheduler keeps "
            "its settings; to change the schedule, fork from a checkpoint of a run without one)"
        )
    if differences:
        raise CheckpointError(
            f"ckpt_path={path!r} was trained with other options; resume with the overrides of that run:\n  "
            + "\n  ".join(differences)
        )


def _differs(key: str, before: Mapping, now: Mapping, added: Mapping) -> bool:
    """Whether option ``key`` differs between a saved config and today's; an option added since (absent
    before, at its default ``added[key]`` now: the old behaviour) does not."""
    if key not in before and key in added and now.get(key) == added[key]:
        return False
    return before.get(key) != now.get(key)


def _constructor_defaults(target) -> dict:
    """Keyword defaults of the class named by a ``_target_`` ({} when it cannot be imported or inspected)."""
    cls = _import(target) if isinstance(target, str) else None
    try:
        parameters = inspect.signature(cls).parameters if cls is not None else {}
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}


def check_data_config(cfg: DictConfig) -> None:
    """The options of ``python -m ss4rec.data``: the data group and ``force``."""
    problems = Problems()
    if not _resolving(problems, _without_hydra(cfg)):
        problems.raise_if_any()
    problems.check("force", _get(cfg, "force", False), BOOL)
    check_data(problems, cfg.data)
    problems.raise_if_any()
