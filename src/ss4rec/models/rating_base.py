"""A trained biased-MF, SVD++, timeSVD++ or I-AutoRec model, frozen, as the base a sequence model's rating head corrects.

``model.rating_base=<MF, SVD++, timeSVD++ or I-AutoRec run folder or checkpoint>``: a sequential model then predicts
``rating = base(u, i) + head(h_t, e_i)`` instead of ``mean + head(h_t, e_i)``, where base(u, i) =
``mean + b_u + b_i + p_u . q_i`` comes from an ``mf`` run trained with ``task=rating`` on the same split. An
``svdpp`` run is the same formula with ``p_u + |N(u)|^(-1/2) sum_{j in N(u)} y_j`` as the user's factor: N(u) is
the user's training part in training, validation and test alike (``ss4rec.models.svdpp``), so that factor is one
fixed vector per user, computed once from the data when the base is filled. A ``timesvdpp`` run adds its time
terms: ``b_{i,Bin(t)}``, ``alpha_u dev_u(t)`` and ``b_{u,day(t)}`` at the time t of the rating predicted (a
training target's, a past rating's, or the held-out rating's, known as for ``model=timesvdpp``), from the run's
own time index (``ss4rec.models.time_bias``), so the base predicts what the timeSVD++ run predicts. An ``autorec``
run (I-AutoRec) is read as the MF it is once its input columns are fixed: ``p_u = [W_u, c_u]`` and ``q_i = [code_i,
1]``, each item coded once from the rating matrix in the run's checkpoint (``IAutoRec.mf_tables``).
The head starts at zero, so training starts from the base's predictions and learns what the user's sequence (its
order, times and recent ratings) adds to them. The tables are buffers: never trained, saved in the
sequence model's checkpoints. The model is built with empty tables; a new training run fills them from the
base's checkpoint (``FrozenMF.fill``, called by ``ss4rec.training``), a checkpoint restores them with its own
state dict (the buffers take the saved shapes), so evaluating or resuming does not need the base run.

**Cross-fitted bases.** ``model.rating_base='<folder>/*'`` (a glob) names the K runs of one cross-fitting: the
same model trained with ``data.holdout_folds=K`` and each ``data.holdout_fold`` 0..K-1 once
(``ss4rec.data.folds``). The tables then gain a leading fold dimension. A training rating (a target, or a past
rating read as an input error) is predicted by the run that left its fold out, so the errors the head learns
from are out of sample, like those of the held-out ratings it is scored on; a held-out rating (validation,
test) by the mean of the K runs, none of which saw it, or, with ``model.rating_base_heldout=<run>``, by that run
trained on every training rating (stacking's usual last step: the K runs are each fitted on (K-1)/K of the ratings,
so their mean is a slightly weaker base than the full run). A single run is the case K = 1.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ss4rec.data.collate import history_batch
from ss4rec.data.folds import rating_fold
from ss4rec.errors import UserError
from ss4rec.models.time_bias import drift_deviation, find_keys, time_bins, user_day_keys
from ss4rec.paths import checkpoint_run, chosen_checkpoint, no_checkpoint

if TYPE_CHECKING:
    from ss4rec.data.store import SequenceStore

#: the MF checkpoint's state-dict keys (under ``model.``) read into the base, by the base's buffer names
MF_KEYS = {
    "user_factors": "user_embedding.weight",
    "user_bias": "user_bias.weight",
    "item_factors": "item_embedding.weight",
    "item_bias": "item_bias.weight",
    "mean": "rating_head.rating_mean",
}
#: what an ``svdpp`` checkpoint has beyond MF's keys: the implicit factors y_j
IMPLICIT_KEY = "implicit_embedding.weight"
#: what marks an ``autorec`` checkpoint (its rating matrix), read as MF tables by ``IAutoRec.mf_tables``
AUTOREC_KEY = "row_starts"
#: the models a base may come from (``model._target_`` of the run)
BASE_TARGETS = ("ss4rec.models.mf.MF", "ss4rec.models.svdpp.SVDpp", "ss4rec.models.timesvdpp.TimeSVDpp",
                "ss4rec.models.autorec.IAutoRec")  # fmt: skip
#: the rank of each table with its leading fold dimension (checkpoints from before cross-fitting lack it)
TABLE_RANKS = {"user_factors": 3, "user_bias": 2, "item_factors": 3, "item_bias": 2, "mean": 1}
#: a ``timesvdpp`` checkpoint's time terms and time index (under ``model.``), by the base's buffer names
TIME_KEYS = {
    "user_drift": "user_drift.weight",  # alpha_u (U, 1)
    "item_bin_bias": "item_bin_bias.weight",  # (N + 1, bins)
    "time_origin": "time_origin",
    "bin_seconds": "bin_seconds",
    "first_day": "first_day",
    "user_day_sum": "user_day_sum",
    "user_day_count": "user_day_count",
}
#: the base's time buffers with their leading run dimension (empty without a timeSVD++ base): ``day_keys`` and
#: ``day_bias`` hold every run's user-days in one sorted table (each key offset by its run, ``RUN_BITS``)
TIME_RANKS = {"user_drift": 2, "item_bin_bias": 3, "time_origin": 1, "bin_seconds": 1, "first_day": 1,
              "user_day_sum": 2, "user_day_count": 2, "n_bins": 1, "beta": 1, "day_keys": 1, "day_bias": 1}  # fmt: skip
#: the integer buffers among them (the rest follow the module's float dtype)
TIME_INTEGERS = {"time_origin", "bin_seconds", "first_day", "user_day_sum", "user_day_count", "n_bins", "day_keys"}
RUN_BITS = 56  # a run's user-day key: run << 56 | user << 32 | day (users below 2^24)


class RatingBaseError(UserError):
    """The rating base cannot be read, or does not fit the model's users and items."""

    OPTION = "model.rating_base"

    def naming(self, option: str) -> RatingBaseError:
        """This error as met through ``option`` (another config key, a script's argument) rather than
        ``model.rating_base``, which its message opens with (``model.rating_base=...`` or ``model.rating_base: ...``)."""
        text = str(self)
        rest = text.removeprefix(self.OPTION)
        return RatingBaseError(option + rest if rest[:1] in ("=", ":") else text)


def mf_checkpoint(path: str | Path) -> Path:
    """The checkpoint of an MF, SVD++ or timeSVD++ run folder (its best, as ``metrics.json`` names it), or ``path`` itself."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RatingBaseError(f"model.rating_base={str(path)!r}: no such file or run folder")
    chosen, best = chosen_checkpoint(path)
    if chosen is not None:
        return chosen
    hint = (f"train one with `python train.py model=mf task=rating hydra.run.dir={path}` (or model=svdpp, timesvdpp, "
            "autorec) on the same data")  # fmt: skip
    raise RatingBaseError(f"model.rating_base={str(path)!r}: {no_checkpoint(path, best, hint)}")


def base_paths(path: str | Path) -> list[Path]:
    """What ``model.rating_base`` names: one run folder or checkpoint, or every match of a glob pattern."""
    text = str(path)
    if not any(char in text for char in "*?["):
        return [Path(text)]
    found = sorted(match for match in map(Path, glob.glob(text)) if match.is_dir() or match.suffix == ".ckpt")
    if not found:
        raise RatingBaseError(f"model.rating_base={text!r}: the pattern matches no run folder or .ckpt file")
    return found


def cross_fitting(path: str | Path, configs: list[dict] | None = None) -> list[Path]:
    """The base checkpoints ``model.rating_base`` names, in fold order: one run trained on every training
    rating, or the K runs of one cross-fitting (``data.holdout_folds=K``, folds 0..K-1 each once).

    ``configs``: the runs' configs in ``base_paths`` order (default: read from each run folder).
    """
    paths = base_paths(path)
    checkpoints = [mf_checkpoint(each) for each in paths]
    if configs is None:
        from ss4rec.serve.loading import run_config  # here: serving imports the models

        configs = []
        for checkpoint in checkpoints:
            try:
                configs.append(run_config(checkpoint_run(checkpoint)))
            except UserError:  # no run config: a base trained on every rating, unless K of them are given
                configs.append({})
    folds = [((config.get("data") or {}).get("holdout_folds") or 0, (config.get("data") or {}).get("holdout_fold") or 0)
             for config in configs]  # fmt: skip
    if len(paths) == 1 and folds[0][0] == 0:
        return checkpoints
    shown = ", ".join(f"{each} (fold {fold} of {k})" if k else f"{each} (every rating)" for each, (k, fold) in zip(paths, folds))
    if sorted(folds) != [(len(paths), fold) for fold in range(len(paths))]:
        raise RatingBaseError(
            f"model.rating_base={str(path)!r}: a cross-fitted base is K runs with data.holdout_folds=K and "
            f"data.holdout_fold 0..K-1 once each (a glob matching all of them); found {shown}"
        )
    return [checkpoints[folds.index((len(paths), fold))] for fold in range(len(paths))]


def svdpp_user_factors(
    store: SequenceStore, user_factors: torch.Tensor, implicit: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """SVD++'s user factor with N(u) = the user's training part: ``p_u + |N(u)|^(-1/2) sum y_j``, (U, K).

    ``user_factors`` p (U, K), ``implicit`` y (N + 1, K) with a zero padding row 0. The implicit term is
    SVD++'s own (``implicit_feedback`` over the ``history`` rows it trains on), ``chunk`` users at a time, so
    memory stays O(U K + chunk x longest training part x K).
    """
    from ss4rec.models.svdpp import implicit_feedback  # here: svdpp -> base -> this module at import time

    table = nn.Embedding.from_pretrained(implicit, freeze=True, padding_idx=0)
    out = user_factors.clone()
    for start in range(0, store.n_users, chunk):
        users = np.arange(start, min(start + chunk, store.n_users))
        out[users] += implicit_feedback(history_batch(store, users)["history"], table)
    return out


class FrozenMF(nn.Module):
    """``mean + b_u + b_i + p_u . q_i`` from fixed tables, one set per fold F (1 without cross-fitting):
    user (F, U, K), (F, U), item (F, N + 1, K), (F, N + 1), mean (F,).

    Filled from an ``mf`` run's tables, or from an ``svdpp`` run's with ``p_u`` replaced by SVD++'s user
    factor over the training part (``svdpp_user_factors``): the same predictions as the SVD++ run. A
    ``timesvdpp`` run also fills the time buffers (``TIME_RANKS``; empty otherwise): its predictions then need
    the time of each rating (``user_part(..., times=)``).
    """

    def __init__(self, n_users: int, n_items: int, path: str, heldout: str | None = None):
        super().__init__()
        self.n_users, self.n_items, self.path, self.heldout = n_users, n_items, path, heldout
        # empty until ``fill`` or a state dict gives them their size
        for name, rank in TABLE_RANKS.items():
            self.register_buffer(name, torch.zeros((0,) * rank))
        # whether the last table is a run on every training rating that predicts the held-out ratings
        self.register_buffer("heldout_table", torch.tensor(False))
        for name, rank in TIME_RANKS.items():  # a timeSVD++ base's time terms and index; empty for the others
            self.register_buffer(name, self._empty_time_buffer(name, rank))

    @staticmethod
    def _empty_time_buffer(name: str, rank: int) -> torch.Tensor:
        return torch.zeros((0,) * rank, dtype=torch.long if name in TIME_INTEGERS else torch.get_default_dtype())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "heldout_table", torch.tensor(False))  # saved before the option: none
        for name, rank in TIME_RANKS.items():  # saved before timeSVD++ bases: none
            state_dict.setdefault(prefix + name, self._empty_time_buffer(name, rank))
        # take the saved shapes, so a checkpoint restores without the base run
        for name, rank in {**TABLE_RANKS, **TIME_RANKS}.items():
            saved = state_dict.get(prefix + name)
            if saved is None:
                continue
            if saved.dim() == rank - 1:  # saved before cross-fitting: one base, no fold dimension
                saved = state_dict[prefix + name] = saved.unsqueeze(0)
            if saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def tables(self) -> int:
        """Sets of tables: the K folds, plus the held-out ratings' run with ``heldout``."""
        return self.mean.shape[0]

    @property
    def folds(self) -> int:
        return self.tables - int(self.heldout_table)

    @property
    def timed(self) -> bool:
        """Whether the base is a timeSVD++ run's (its ratings depend on their time)."""
        return self.n_bins.numel() > 0

    @property
    def filled(self) -> bool:
        return self.user_factors.shape[1] == self.n_users and self.item_factors.shape[1] == self.n_items + 1

    #: the buffers indexed by user (their user dimension after the run dimension)
    USER_TABLES = ("user_factors", "user_bias", "user_drift", "user_day_sum", "user_day_count")
    AVERAGED = ("user_factors", "user_bias")  # the average user's; its time tables are zero

    @torch.no_grad()
    def add_cold_user(self) -> int:
        """Append the average training user at index ``n_users`` and return that index: in each table the mean of every
        user's factor and bias (so the base rates an item for them as it rates it on average over the training users:
        the prediction is linear in them), no drift and no training days (a timeSVD++ base adds only the item's time-bin
        bias). Serving maps users outside the training data to it; training never sees it. Calling it again returns
        the same index. (Zero factors instead would not do: an I-AutoRec base keeps each user's output bias there.)"""
        if self.user_factors.shape[1] > self.n_users:  # added before (and maybe new users' rows after it)
            return self.n_users
        for name in self.USER_TABLES:
            table = getattr(self, name)
            if table.numel():  # a time table is empty without a timeSVD++ base
                if name in self.AVERAGED:
                    row = table.mean(1, keepdim=True, dtype=torch.float64).to(table.dtype)
                else:  # no drift, no days: dev_u(t) = 0, no day bias
                    row = table.new_zeros(table.shape[0], 1, *table.shape[2:])
                setattr(self, name, torch.cat([table, row], dim=1))
        return self.n_users

    @torch.no_grad()
    def add_users(self, rows: int) -> None:
        """Grow the user tables to at least ``rows`` rows, each new one the average training user (``add_cold_user``,
        called first): the rows ``ss4rec.models.fold_in.FoldIn`` fits to users the base was not trained on. The tables
        grow by at least half their size at a time, so adding users one by one copies them O(log) times."""
        self.add_cold_user()
        have = self.user_factors.shape[1]
        if rows <= have:
            return
        grown = max(rows, have + have // 2)
        for name in self.USER_TABLES:
            table = getattr(self, name)
            if table.numel():
                extra = table[:, self.n_users : self.n_users + 1].expand(-1, grown - have, *table.shape[2:])
                setattr(self, name, torch.cat([table, extra], dim=1))

    def item_offsets(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Each table's prediction for ``items`` (n,) without the user's terms, (T, n): ``mean + b_i``, and a timeSVD++
        base's ``b_{i,Bin(t)}`` at unix-second ``times`` (n,)."""
        offsets = self.mean[:, None] + self.item_bias[:, items]
        if self.timed:
            if times is None:
                raise ValueError("a timeSVD++ rating base predicts a rating at its time: item_offsets needs times")
            shape = (self.tables, 1)
            times = torch.as_tensor(times, device=self.time_origin.device).long()[None]
            bins = time_bins(times, self.time_origin.view(shape), self.bin_seconds.view(shape), self.n_bins.view(shape))
            tables = torch.arange(self.tables, device=bins.device)[:, None]
            offsets = offsets + self.item_bin_bias[tables, items[None], bins]
        return offsets

    @torch.no_grad()
    def fill(self, store: SequenceStore | None = None) -> None:
        """Read the tables from the ``mf`` or ``svdpp`` checkpoints ``path`` names (``cross_fitting``); their
        users and items must be the model's. An ``svdpp`` checkpoint needs ``store``, the data the run trains
        on, for each user's N(u)."""
        checkpoints = cross_fitting(self.path)
        if self.heldout is not None:
            if len(checkpoints) == 1:
                raise RatingBaseError(
                    f"model.rating_base_heldout={self.heldout!r} replaces the mean of a cross-fitted base's runs; "
                    f"model.rating_base={self.path!r} is one run"
                )
            checkpoints = [*checkpoints, *cross_fitting(self.heldout)]  # a fold run alone is refused there
        tables = [self._read(checkpoint, store) for checkpoint in checkpoints]
        timed = ["time" in table for table in tables]
        if any(timed) and not all(timed):
            shown = ", ".join(f"{checkpoint} ({'timeSVD++' if flag else 'no time terms'})" for checkpoint, flag in zip(checkpoints, timed))
            raise RatingBaseError(f"model.rating_base: the runs of one base must all be timeSVD++ runs or none; got {shown}")
        widths = [table["user_factors"].shape[-1] for table in tables]
        if len(set(widths)) > 1:
            shown = ", ".join(f"{checkpoint} ({width})" for checkpoint, width in zip(checkpoints, widths))
            raise RatingBaseError(f"model.rating_base: the runs of one base must have factors of one width (the same model "
                                  f"and dim or hidden); got {shown}")  # fmt: skip
        for name in TABLE_RANKS:
            setattr(self, name, torch.stack([table[name] for table in tables]))
        self.heldout_table = torch.tensor(self.heldout is not None, device=self.mean.device)
        for name, rank in TIME_RANKS.items():  # empty unless timed
            setattr(self, name, self._empty_time_buffer(name, rank).to(self.mean.device))
        if all(timed):
            self._fill_time([table["time"] for table in tables])

    def _fill_time(self, runs: list[dict[str, torch.Tensor]]) -> None:
        """Stack the runs' time terms and indexes (``_read_time``): item-bin tables padded to the most bins, the
        user-days of every run in one sorted key table."""
        if self.n_users >= 2 ** (RUN_BITS - 32):
            raise RatingBaseError(f"model.rating_base: a timeSVD++ base holds at most {2 ** (RUN_BITS - 32) - 1} users, "
                                  f"this data has {self.n_users}")  # fmt: skip
        most = max(int(run["n_bins"]) for run in runs)
        for run in runs:
            run["item_bin_bias"] = nn.functional.pad(run["item_bin_bias"], (0, most - run["item_bin_bias"].shape[-1]))
        for name in TIME_RANKS:
            if name != "day_keys" and name != "day_bias":
                setattr(self, name, torch.stack([torch.as_tensor(run[name]) for run in runs]))
        self.day_keys = torch.cat([run["day_keys"] + index * 2**RUN_BITS for index, run in enumerate(runs)])
        self.day_bias = torch.cat([run["day_bias"] for run in runs])

    def _read(self, checkpoint: Path, store: SequenceStore | None) -> dict[str, torch.Tensor]:
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            state = saved["state_dict"]
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
            raise RatingBaseError(f"model.rating_base: cannot read {checkpoint}: {error}") from error
        if f"model.{AUTOREC_KEY}" in state:
            return self._read_autorec(checkpoint, state)
        tables = {name: state.get(f"model.{key}") for name, key in MF_KEYS.items()}
        missing = [MF_KEYS[name] for name, value in tables.items() if value is None]
        if missing:
            raise RatingBaseError(
                f"model.rating_base: {checkpoint} is not a biased-MF (model=mf), SVD++ (svdpp), timeSVD++ (timesvdpp) or I-AutoRec (autorec) checkpoint: "
                f"it has no {', '.join(missing)}"
            )
        self._check_size(checkpoint, tables["user_factors"].shape[0], tables["item_factors"].shape[0] - 1)
        like = {"device": self.mean.device, "dtype": self.mean.dtype}  # the module's, e.g. after .double()
        user_factors = tables["user_factors"].to(**like)
        implicit = state.get(f"model.{IMPLICIT_KEY}")
        if implicit is not None:  # SVD++: the user factor over the fixed training part
            if store is None:
                raise RatingBaseError(
                    f"model.rating_base: {checkpoint} is an SVD++ checkpoint; filling it needs the data (fill(store))"
                )
            user_factors = svdpp_user_factors(store, user_factors, implicit.to(**like))
        out = {
            "user_factors": user_factors,
            "item_factors": tables["item_factors"].to(**like),
            "user_bias": tables["user_bias"].reshape(-1).to(**like),
            "item_bias": tables["item_bias"].reshape(-1).to(**like),
            "mean": tables["mean"].reshape(()).to(**like),
        }
        if f"model.{TIME_KEYS['user_drift']}" in state:
            out["time"] = self._read_time(checkpoint, state, saved.get("hyper_parameters") or {}, like)
        return out

    def _check_size(self, checkpoint: Path, n_users: int, n_items: int) -> None:
        """Refuse a base run whose users and items are not this run's."""
        if (n_users, n_items) != (self.n_users, self.n_items):
            raise RatingBaseError(
                f"model.rating_base: {checkpoint} has {n_users} users and {n_items} items, this run's data "
                f"has {self.n_users} and {self.n_items}: train the base run on the same data options"
            )

    def _read_autorec(self, checkpoint: Path, state: dict) -> dict[str, torch.Tensor]:
        """An I-AutoRec checkpoint's network as MF tables (``IAutoRec.mf_tables``): its codes of every item from the
        rating matrix the checkpoint holds (the run's training ratings, without its held-out fold)."""
        from ss4rec.models.autorec import IAutoRec  # here: autorec -> base -> this module at import time

        model = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
        hidden, n_users = model["encoder.weight"].shape
        n_items = model[AUTOREC_KEY].shape[0] - 2
        self._check_size(checkpoint, n_users, n_items)
        network = IAutoRec(n_items, n_users, hidden=hidden)
        network.load_state_dict(model)
        like = {"device": self.mean.device, "dtype": self.mean.dtype}
        return {name: table.to(**like) for name, table in network.to(**like).mf_tables().items()}

    @staticmethod
    def _read_time(checkpoint: Path, state: dict, hyper: dict, like: dict) -> dict[str, torch.Tensor]:
        """A timeSVD++ checkpoint's time terms and index, each without the run dimension; ``beta`` from its
        hyperparameters (it is not a tensor of the model)."""
        found = {name: state.get(f"model.{key}") for name, key in {**TIME_KEYS, "day_bias": "day_bias.weight", "day_keys": "day_keys"}.items()}
        missing = [name for name, value in found.items() if value is None]
        beta = (hyper.get("model") or {}).get("beta")
        if missing or beta is None:
            raise RatingBaseError(
                f"model.rating_base: {checkpoint} is a timeSVD++ checkpoint without "
                f"{', '.join(missing + ([] if beta is not None else ['model.beta in its hyper_parameters']))}"
            )
        device = like["device"]
        out = {name: found[name].to(device) for name in TIME_KEYS if name in TIME_INTEGERS}
        out.update(
            user_drift=found["user_drift"].reshape(-1).to(**like),
            item_bin_bias=found["item_bin_bias"].to(**like),
            n_bins=torch.tensor(found["item_bin_bias"].shape[-1], device=device),
            beta=torch.tensor(float(beta), **like),
            day_keys=found["day_keys"].to(device),
            day_bias=found["day_bias"].reshape(-1)[:-1].to(**like),  # its last row is the "no day" zero
        )
        return out

    def user_part(
        self, users: torch.Tensor, items: torch.Tensor | None = None, times: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What a query carries for the base, (..., T (K + 2)) over its T sets of tables: per set ``w [p_u, b_u, 1]``;
        a timeSVD++ base (``timed``) carries ``w [z_u, b_u(t), 1]`` and the time bin, (..., T (K + 3)).

        ``items`` (..., like ``users``) given: the users' training ratings of those items, each predicted by
        the fold that left it out (``w`` one-hot at ``rating_fold``); None: held-out ratings, by the ``heldout``
        run when there is one, else the mean of the folds (``w = 1/F``). ``times`` (like ``users``, unix
        seconds): when the ratings were made; a timeSVD++ base needs them, the others ignore them.
        """
        folds, tables = self.folds, self.tables
        user_bias = self.user_bias[:, users]  # (T, ...)
        if self.timed:
            if times is None:
                raise ValueError("a timeSVD++ rating base predicts a rating at its time: user_part needs times")
            shift, bins = self._time_terms(users, times)
            user_bias = user_bias + shift
        parts = torch.cat([self.user_factors[:, users], user_bias.unsqueeze(-1)], dim=-1)  # (T, ..., K + 1)
        parts = torch.cat([parts, torch.ones_like(parts[..., :1])], dim=-1).movedim(0, -2)  # (..., T, K + 2)
        if items is not None:
            fold = self.rating_fold(users, items)
            weights = nn.functional.one_hot(fold, tables).to(parts.dtype)  # (..., T)
        elif bool(self.heldout_table):
            weights = nn.functional.one_hot(torch.full_like(users, folds), tables).to(parts.dtype)
        else:
            weights = torch.full(parts.shape[:-1], 1.0 / folds, dtype=parts.dtype, device=parts.device)
        parts = parts * weights.unsqueeze(-1)
        if self.timed:  # the bin, unweighted (a weight of 1/F would move it)
            parts = torch.cat([parts, bins.movedim(0, -1).unsqueeze(-1).to(parts.dtype)], dim=-1)  # (..., T, K + 3)
        return parts.flatten(-2)

    def rating_fold(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The fold run that left out each training rating of ``users`` on ``items`` (0 for a base of one run)."""
        return rating_fold(users, items, self.folds) if self.folds > 1 else torch.zeros_like(users)

    def out_of_fold(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """The base's ratings of training ratings (...), each from the fold that left it out: ``self(self.user_part(
        users, items, times), items)`` computed from that fold's tables alone, without the others' (zero-weighted)
        parts, which a wide base (I-AutoRec: 501 factors a table) makes the bulk of the work and memory."""
        fold = self.rating_fold(users, items)
        user_bias, item_bias = self.user_bias[fold, users], self.item_bias[fold, items]
        if self.timed:
            if times is None:
                raise ValueError("a timeSVD++ rating base predicts a rating at its time: out_of_fold needs times")
            shift, bins = self._time_terms(users, times)  # (T, ...)
            user_bias = user_bias + shift.gather(0, fold.unsqueeze(0)).squeeze(0)
            item_bins = self.item_bin_bias[fold, items]  # (..., bins)
            item_bias = item_bias + item_bins.gather(-1, bins.gather(0, fold.unsqueeze(0)).squeeze(0).unsqueeze(-1)).squeeze(-1)
        dot = (self.user_factors[fold, users] * self.item_factors[fold, items]).sum(-1)
        return dot + user_bias + (self.mean[fold] + item_bias)

    def _time_terms(self, users: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's ``alpha_u dev_u(t) + b_{u,day(t)}`` and ``Bin(t)``, (T, ...) each (the bin as long), for users
        and unix-second ``times`` (...)."""
        shape = (self.tables,) + (1,) * users.dim()  # a run buffer (T,) against the queries (...)
        times = times.to(self.time_origin.device).long().unsqueeze(0)  # (1, ...)
        first_day = self.first_day.view(shape)
        bins = time_bins(times, self.time_origin.view(shape), self.bin_seconds.view(shape), self.n_bins.view(shape))
        dev = drift_deviation(times, first_day, self.user_day_sum[:, users], self.user_day_count[:, users],
                              self.beta.view(shape).double())  # fmt: skip
        shift = self.user_drift[:, users] * dev.to(self.user_drift.dtype)
        keys, valid = user_day_keys(users.unsqueeze(0), times, first_day)
        keys = keys + torch.arange(self.tables, device=keys.device).view(shape) * 2**RUN_BITS
        slot, found = find_keys(self.day_keys, keys, valid)
        if len(self.day_bias):
            shift = shift + torch.where(found, self.day_bias[slot], 0.0)
        return shift, bins

    def every_item(self, user_part: torch.Tensor) -> torch.Tensor:
        """``self(user_part, items)`` for every item id at once, user_part (B, T (K + 2)) (timed: T (K + 3)) -> (B,
        N + 1): one matrix product per table instead of a gathered factor row per (user, item) pair, which for a
        wide base (I-AutoRec, 6 x 501 factors) is gigabytes for a batch of users."""
        part = user_part.unflatten(-1, (self.tables, -1))  # (B, T, K + 2) or (B, T, K + 3)
        if self.timed:
            bins, part = part[..., -1].long(), part[..., :-1]
        factors, user_bias, weight = part[..., :-2], part[..., -2], part[..., -1]
        factors = factors.to(self.item_factors.dtype)
        rating = torch.einsum("btk,tnk->bn", factors, self.item_factors)
        rating = rating + (weight @ (self.mean[:, None] + self.item_bias)) + user_bias.sum(-1, keepdim=True)
        if self.timed:  # b_{i,Bin(t)}: each table's bin column of every item, (B, T, N + 1)
            binned = self.item_bin_bias.permute(0, 2, 1)[torch.arange(self.tables, device=bins.device), bins]
            rating = rating + (weight[..., None] * binned).sum(1)
        return rating

    def forward(self, user_part: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user_part (..., T (K + 2)) from ``user_part`` ((..., T (K + 3)) timed), items (...) -> the base's ratings
        (...): ``sum_t w_t (mean_t + b_u^t + b_i^t + p_u^t . q_i^t)`` (timed: ``b_u^t(t)``, ``+ b_{i,Bin(t)}^t``)."""
        part = user_part.unflatten(-1, (self.tables, -1))  # (..., T, K + 2) or (..., T, K + 3)
        if self.timed:
            bins, part = part[..., -1].long(), part[..., :-1]
        factors, user_bias, weight = part[..., :-2], part[..., -2], part[..., -1]
        dot = (factors * self.item_factors[:, items].movedim(0, -2)).sum(-1)  # (..., T)
        item_bias = self.item_bias[:, items].movedim(0, -1)  # (..., T)
        if self.timed:
            item_bias = item_bias + self.item_bin_bias[:, items].movedim(0, -2).gather(-1, bins.unsqueeze(-1)).squeeze(-1)
        return (dot + user_bias + weight * (self.mean + item_bias)).sum(-1)
