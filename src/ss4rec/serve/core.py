"""The serving core: recommendations, rating predictions and event ingestion for one trained model.

No web framework here (``ss4rec.serve.app`` wraps it in HTTP). Users and items are addressed by their
original MovieLens ids.

How a user's query vector is computed:

* Recurrent models (``model.supports_step``: SS4Rec, GRU4Rec, Mamba4Rec) keep, per user, the model state
  after every served event but the last, and that last event (``UserState``). A query steps the last event
  with the request time ``at`` as the time of the next interaction (the gap a ``target_time=known`` SS4Rec
  reads at its last position, exactly as in evaluation, where it is the test target's time) without
  committing it. Ingesting an event in time order commits the pending event with the new event's time as its
  next time: one step, O(1) in the history's length.
* Other sequential models (SASRec) recompute over the last ``max_len`` events at every query.

Which history is served (``history``):

* ``full``: a recurrent state carries the user's whole history (every ingest is O(1)). For users with more
  than ``max_len`` events this differs from what training and evaluation saw (the last ``max_len`` only).
* ``window``: the last ``max_len`` events, exactly the evaluation input; once a history is longer than the
  window, an ingest rebuilds the state from the log (O(max_len)).

The interaction log is the source of truth: a cache miss, an evicted entry or an out-of-order event rebuilds
the user's state from it.

Runs trained with ``model.rating_base`` (their ratings correct a frozen MF, SVD++, timeSVD++ or I-AutoRec run): a
query appends the user's part under the base (``last_queries``: its factors, the drift columns of the last events), and
with ``rating_base_residuals`` every event read adds its rating's error under the user's base factors, so a step reads
the user's index. A new user has no base factors: with ``new_users="fold_in"`` (the default) they get a row of their
own in the base, fitted to their ratings (``ss4rec.models.fold_in.FoldIn``: the posterior mean under the training
users' rows as the prior, each fold run's fit leaving out the ratings of its fold), refitted at each rating up to 20
and then at every 5% more ratings (``REFIT_GROWTH``), after which their state is rebuilt from the log (its steps read
errors under the row); with no rating yet that row is the base's average training user. A folded-in user's first
ratings can get a share of the network's correction only (``new_user_weights``) and a noise of their own
(``new_user_noises``), both fitted on validation by ``ss4rec.serve.new_user_weights``: the network was trained on users
whose rows knew all their ratings. With
``"average_user"`` every new user is served as that user (``FrozenMF.add_cold_user``: its factors and bias are the
training users' mean, so the base rates an item as it rates it on average over the training users; the network reads
the new user's own events, and the errors it reads are taken against that); with ``"refuse"`` their events are
recorded and their queries answered with ``UntrainedUser``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ss4rec.models.base import SequentialRecommender
from ss4rec.models.fold_in import FoldIn
from ss4rec.models.stepping import step_through
from ss4rec.serve.catalogue import Catalogue
from ss4rec.serve.errors import BadRequest, ServeError, UnknownUser, UntrainedUser
from ss4rec.serve.interactions import Event, EventJournal, InteractionLog
from ss4rec.serve.state_cache import StateCache, UserState
from ss4rec.serve.validation import check_k, check_rating, check_timestamp, check_user_id, request_time

HISTORY_MODES = ("full", "window")
#: how a ``model.rating_base`` run serves a user outside its training data (module doc)
NEW_USER_MODES = ("fold_in", "average_user", "refuse")
#: a folded-in user's row is refitted once their ratings have grown by this fraction since the last fit (or by one)
REFIT_GROWTH = 0.05


class Unsupported(ServeError):
    """The model cannot answer this kind of request (e.g. ratings from a ranking-only model)."""


@dataclass
class ServeOptions:
    """How the core serves. ``max_len``: the window (the run's ``data.max_len``); ``history``: ``full`` or
    ``window`` (module doc); ``cache_mb``: bound of the state cache; ``has_rating``: the model was trained
    with a rating objective; ``ranks``: it was trained to rank (else items are ranked by predicted rating);
    ``rating_range``: predictions are clamped to it, as in evaluation; ``new_users``: ``fold_in``, ``average_user`` or
    ``refuse``, how a ``model.rating_base`` run serves a user outside its training data, ``fold_in_noise`` the rating
    variance ``fold_in`` assumes (module doc); ``new_user_weights``: ``(w_1, ..., w_n)``, a folded-in user with k <= n
    ratings is rated ``base + w_k (network - base)`` (the network's correction scaled; ``ss4rec.serve.new_user_weights``
    fits them on validation), from n + 1 ratings on (and with none) as the network rates them; ``new_user_noises``:
    ``(v_1, ..., v_m)``, a user with k <= m ratings is folded in at noise ``v_k`` (chosen on validation with the
    weights), from m + 1 on at ``fold_in_noise``."""

    max_len: int = 200
    history: str = "full"
    cache_mb: float = 256.0
    has_rating: bool = False
    ranks: bool = True
    rating_range: tuple[float, float] = (1.0, 5.0)
    new_users: str = "fold_in"
    fold_in_noise: float = 0.5
    new_user_weights: tuple[float, ...] = ()
    new_user_noises: tuple[float, ...] = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.history not in HISTORY_MODES:
            raise ValueError(f"history must be one of {HISTORY_MODES}, got {self.history!r}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.new_users not in NEW_USER_MODES:
            raise ValueError(f"new_users must be one of {NEW_USER_MODES}, got {self.new_users!r}")
        if not (np.isfinite(self.fold_in_noise) and self.fold_in_noise > 0):
            raise ValueError(f"fold_in_noise must be a finite number > 0, got {self.fold_in_noise!r}")
        self.new_user_weights = tuple(float(w) for w in self.new_user_weights)
        if not all(np.isfinite(w) for w in self.new_user_weights):
            raise ValueError(f"new_user_weights must be finite numbers, got {self.new_user_weights!r}")
        self.new_user_noises = tuple(float(v) for v in self.new_user_noises)
        if not all(np.isfinite(v) and v > 0 for v in self.new_user_noises):
            raise ValueError(f"new_user_noises must be finite numbers > 0, got {self.new_user_noises!r}")

    def noise_for(self, count: int) -> float:
        """The fold-in noise of a new user with ``count`` ratings: ``new_user_noises[count - 1]`` when it has one, else
        ``fold_in_noise``."""
        return self.new_user_noises[count - 1] if 1 <= count <= len(self.new_user_noises) else self.fold_in_noise


class ServingCore:
    """Answers ``recommend``, ``rate`` and ``ingest`` for a sequential model; see the module doc."""

    def __init__(
        self,
        model: SequentialRecommender,
        catalogue: Catalogue,
        log: InteractionLog,
        options: ServeOptions | None = None,
        journal: EventJournal | None = None,
    ):
        if not isinstance(model, SequentialRecommender):
            raise Unsupported(f"serving needs a sequential model, got {type(model).__name__}")
        self.model = model.eval()
        self.catalogue, self.log, self.journal = catalogue, log, journal
        self.options = options or ServeOptions()
        self.cache = StateCache(int(self.options.cache_mb * 2**20))
        self.dtype = model.item_embedding.weight.dtype
        # a frozen MF the ratings correct (model.rating_base): only the training users have its factors; a new user
        # is folded into it (``fold_in``), served as the base's average training user (``cold``), or refused
        self.base = getattr(model, "rating_base", None)
        mode = self.options.new_users if self.base is not None else None
        self.fold_in = FoldIn(self.base, self.options.fold_in_noise) if mode == "fold_in" else None
        self.cold = self.base.add_cold_user() if mode in ("fold_in", "average_user") else None
        # a folded-in new user's (events when last looked at, ratings when their row was last fitted, ratings then)
        self._fitted: dict[int, tuple[int, int, int]] = {}
        # the model's step with constants derived once (the core never changes the parameters)
        self.step = model.frozen_step() if model.supports_step else None
        if hasattr(self.step, "prepare"):  # constants and the compiled kernel now, not in the first request
            self.step.prepare(self.dtype)
        # ranking scores are dot products with the item table (SequentialRecommender.score): one mat-vec
        self._dot_scores = type(model).score is SequentialRecommender.score
        self.state_dir = None  # where snapshots go (set by load_core)
        self.store = None  # the prepared data the log started from (set by load_core)

    # ---- public API -------------------------------------------------------------------------------------
    @property
    def window(self) -> int | None:
        """Events a query reads: ``max_len`` (window mode, and models without a step) or None (all)."""
        if self.options.history == "window" or not self.model.supports_step:
            return self.options.max_len
        return None

    @torch.inference_mode()
    def recommend(self, user_id, k: int = 10, exclude_seen: bool = True, at=None) -> list[dict]:
        """Top-``k`` items for a user: ``item_id`` (original), ``title``, ``genres``, ``score``, ``rating``
        (the predicted rating, None without a rating head); best first, ties by item index. Fewer than ``k``
        when fewer unseen items remain."""
        k = check_k(k, self.catalogue.n_items)
        at = request_time(at)
        query, weight = self._weighted_query(user_id, at)  # (1, Q)
        scores = self._rank_scores(query, weight)
        items, scores = top_items(scores, k, self.log.items(user_id) if exclude_seen else None)
        ratings = self._ratings(query, torch.from_numpy(items), weight).tolist() if self.options.has_rating else None
        return item_rows(self.catalogue, items, scores, ratings)

    def rate(self, user_id, item_ids, at=None) -> list[dict]:
        """Predicted ratings ``[{"item_id", "rating"}]`` of the given original item ids for a user."""
        self._require_rating()
        if isinstance(item_ids, (str, bytes)) or not hasattr(item_ids, "__iter__"):
            raise BadRequest(f"item_ids must be a list of item ids, got {item_ids!r}")
        indices = [self.catalogue.lookup(i) for i in item_ids]
        if not indices:
            raise BadRequest("item_ids must hold at least one item id, got an empty list")
        query, weight = self._weighted_query(user_id, request_time(at))
        ratings = self._ratings(query, torch.tensor(indices), weight)
        return [{"item_id": int(self.catalogue.item_ids[i]), "rating": float(r)} for i, r in zip(indices, ratings)]

    def ingest(self, user_id, item_id, timestamp, rating=None) -> dict:
        """Record an event (new users allowed) and update the user's state.

        In time order (not older than the user's last event) a recurrent state takes one step; an older
        event is stored in its place and the state is rebuilt from the log at the next query.
        Returns ``{"user_id", "n_events", "in_order"}``.
        """
        return record_event(self, [self], user_id, item_id, timestamp, rating)

    def query(self, user_id, at: int) -> torch.Tensor:
        """The user's query vector (1, Q) at request time ``at`` (unix seconds): the hidden state (Q = D), with a
        rating base also the user's part under it (``SequentialRecommender.last_queries``, as in evaluation)."""
        row = self._require_user(user_id)
        if not self.model.supports_step:
            return self._recompute(user_id, row, at)
        entry = self._entry(user_id)
        with torch.inference_mode():
            hidden, _ = self.step(entry.state, self._step_input(entry.pending, at, row))
            if self.base is None:
                return hidden
            # the base's part reads the user and ``at``; SS4Rec's drift columns the errors of the last events
            return self.model.last_queries(hidden, self._window_batch(user_id, row, at))

    def scores(self, user_id, at=None) -> torch.Tensor:
        """Ranking scores of every item (N,), index i-1 for item index i (offline evaluation reads these)."""
        return self._rank_scores(*self._weighted_query(user_id, request_time(at)))

    def predicted_ratings(self, user_id, item_indices: torch.Tensor, at=None) -> torch.Tensor:
        """Clamped rating predictions (K,) for item indices (K,)."""
        query, weight = self._weighted_query(user_id, request_time(at))
        return self._ratings(query, item_indices, weight)

    def every_rating(self, user_id, at=None) -> torch.Tensor:
        """Clamped rating predictions of every item (N,), index i-1 for item index i."""
        self._require_rating()
        return self._every_rating(*self._weighted_query(user_id, request_time(at)))

    def warm(self, user_ids=None, batch_size: int = 256) -> int:
        """Build the states of many users at once (batched steps); returns how many were built."""
        if not self.model.supports_step:
            return 0
        users = [u for u in (self.log.user_ids() if user_ids is None else user_ids)
                 if self.log.length(u) > 0 and self._model_row(u) is not None]
        users.sort(key=self.log.length)  # similar lengths together: little padding
        for start in range(0, len(users), batch_size):
            self._rebuild(users[start : start + batch_size])
        return len(users)

    def close(self, save: bool = True) -> None:
        """Snapshot the state cache (when the core has a ``state_dir``) and close the event journal."""
        if save and self.state_dir is not None:
            from ss4rec.serve.persistence import save_states

            save_states(self)
        if self.journal is not None:
            self.journal.close()

    def info(self) -> dict:
        return {
            **self.options.info,
            "model_class": type(self.model).__name__,
            "recurrent": bool(self.model.supports_step),
            "history": self.options.history,
            "max_len": self.options.max_len,
            "has_rating": self.options.has_rating,
            "rating_base": self.base is not None,
            "new_users": None if self.base is None else self.options.new_users,
            "new_user_weights": list(self.options.new_user_weights),
            "new_user_noises": list(self.options.new_user_noises),
            "n_items": self.catalogue.n_items,
            "n_users": len(self.log),
            "state_cache": self.cache.info(),
        }

    # ---- states -------------------------------------------------------------------------------------------
    def _entry(self, user_id) -> UserState:
        entry = self.cache.get(user_id)
        if entry is None:
            self._rebuild([user_id])
            entry = self.cache.get(user_id)
        return entry

    def _rebuild(self, user_ids: list) -> None:
        """Rebuild users' states from the log: step every served event but the last, for all users at once."""
        histories = [self.log.events(u, last=self.window) for u in user_ids]
        rows = np.array([self._model_row(u) for u in user_ids], dtype=np.int64)
        lengths = np.array([len(h[0]) - 1 for h in histories])  # events before the pending one
        width = max(int(lengths.max(initial=0)), 1)
        items = np.zeros((len(user_ids), width + 1), dtype=np.int64)
        times = np.zeros_like(items)
        ratings = np.zeros((len(user_ids), width + 1), dtype=np.float32)
        for row, (it, ti, ra) in enumerate(histories):
            items[row, : len(it)], times[row, : len(ti)], ratings[row, : len(ra)] = it, ti, ra
        prefix = self._batch(items, times, ratings, lengths, rows)
        with torch.inference_mode():
            _, states = step_through(self.model, prefix, step=self.step)
        for row, user in enumerate(user_ids):
            n = int(lengths[row])
            pending = Event(int(items[row, n]), int(times[row, n]), float(ratings[row, n]))
            state = {k: v[row : row + 1].clone() for k, v in states.items()}
            self.cache.put(user, UserState(state, pending, self.log.length(user)))

    def advance(self, user_id, event: Event, in_order: bool, n_events: int) -> None:
        """After ``event`` went into the log (``in_order``: at the end; the user now has ``n_events``): one committed
        step of the user's state when possible, else drop the entry (rebuilt when queried)."""
        row = self._model_row(user_id)
        if not self.model.supports_step or row is None:
            return
        if n_events == 1:  # a new user: the initial state, the event pending
            self.cache.put(user_id, UserState(self.model.allocate_state(1, self.dtype), event, 1))
            return
        entry = self.cache.get(user_id)
        if entry is None:
            return
        fits = self.window is None or n_events <= self.window
        if not (in_order and fits and entry.n_events == n_events - 1):
            self.cache.drop(user_id)
            return
        with torch.inference_mode():
            _, state = self.step(entry.state, self._step_input(entry.pending, event.time, row))
        self.cache.put(user_id, UserState(state, event, n_events))

    def _recompute(self, user_id, row: int, at: int) -> torch.Tensor:
        """Models without a step: the evaluation query over the last ``max_len`` events with ``at`` as the target time."""
        with torch.inference_mode():
            return self.model.eval_queries(self._window_batch(user_id, row, at))

    def _window_batch(self, user_id, row: int, at: int) -> dict[str, torch.Tensor]:
        """The user's last ``max_len`` events as a one-row ``sequence`` batch whose target is at ``at``."""
        items, times, ratings = self.log.events(user_id, last=self.options.max_len)
        return self._batch(items[None], np.append(times, at)[None], ratings[None], np.array([len(items)]), np.array([row]))

    def _batch(self, items, times, ratings, lengths, rows) -> dict[str, torch.Tensor]:
        """A ``sequence`` batch from (B, L + 1) arrays: positions ``< lengths`` are inputs, and the column
        after each row's last input is its target (its time is that position's next time); ``rows``: each row's
        user index (``_model_row``), which a rating base reads."""
        B, width = items.shape[0], max(int(np.max(lengths, initial=0)), 1)
        real = np.arange(width)[None, :] < lengths[:, None]
        next_times = np.zeros((B, width), dtype=np.int64)
        full_times = np.zeros((B, width + 1), dtype=np.int64)
        full_times[:, : times.shape[1]] = times[:, : width + 1]
        next_times[real] = full_times[:, 1:][real]
        pad = np.zeros((B, width), dtype=np.int64)
        pad_items = np.where(real, np.pad(items, ((0, 0), (0, max(0, width - items.shape[1]))))[:, :width], 0)
        pad_ratings = np.where(real, np.pad(ratings, ((0, 0), (0, max(0, width - ratings.shape[1]))))[:, :width], 0)
        pad_times = np.where(real, full_times[:, :width], 0)
        return {
            "users": torch.from_numpy(np.asarray(rows, dtype=np.int64)),
            "items": torch.from_numpy(pad_items.astype(np.int64)),
            "times": torch.from_numpy(pad_times),
            "ratings": torch.from_numpy(pad_ratings.astype(np.float32)),
            "lengths": torch.from_numpy(np.asarray(lengths, dtype=np.int64)),
            "target_items": torch.from_numpy(pad),
            "target_times": torch.from_numpy(next_times),
            "target_ratings": torch.zeros(B, width),
        }

    @staticmethod
    def _step_input(event: Event, next_time: int, row: int) -> dict[str, torch.Tensor]:
        return {
            "items": torch.tensor([event.item]),
            "ratings": torch.tensor([event.rating]),
            "times": torch.tensor([event.time]),
            "next_times": torch.tensor([next_time]),
            "users": torch.tensor([row]),
        }

    # ---- scoring ------------------------------------------------------------------------------------------
    def _rank_scores(self, query: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        with torch.inference_mode():
            if self.options.ranks:
                if self._dot_scores:  # the item table without its padding row is a contiguous view; h alone
                    return torch.mv(self.model.item_embedding.weight[1:], query[0, : self.model.hidden]).float()  # (N,)
                return self.model.score(query)[0, 1:].float()  # (N,)
            return self._every_rating(query, weight)

    def _every_rating(self, query: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """Every item's clamped rating at once (N,) (with a rating base by matrix products), float32; ``weight``: the
        network's correction scaled (``correction_weight``)."""
        low, high = self.options.rating_range
        with torch.inference_mode():
            rating = self._weighted(self.model.rate_every_item, query, None, weight)
            return rating[0, 1:].clamp(low, high).float()

    def _ratings(self, query: torch.Tensor, items: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        low, high = self.options.rating_range
        with torch.inference_mode():
            rating = self._weighted(self.model.predict_rating, query.expand(len(items), -1), items, weight)
            return rating.clamp(low, high)

    def _weighted(self, rate, query: torch.Tensor, items: torch.Tensor | None, weight: float) -> torch.Tensor:
        """``rate(query[, items])`` (the network's ratings), or with ``weight`` != 1 the base's ratings plus ``weight``
        times the network's correction of them (``model.base_rating``; the base's alone at 0)."""
        args = (query,) if items is None else (query, items)
        if weight == 1.0:
            return rate(*args)
        base = self.model.base_rating(query, items).to(query.dtype)
        return base if weight == 0.0 else base + weight * (rate(*args) - base)

    def _weighted_query(self, user_id, at: int) -> tuple[torch.Tensor, float]:
        """``query(user_id, at)`` and the user's ``correction_weight``, read after it (the query fits a new user's row
        and counts their ratings)."""
        query = self.query(user_id, at)
        return query, self.correction_weight(user_id)

    def correction_weight(self, user_id) -> float:
        """How much of the network's correction of the base a user's ratings get: ``new_user_weights[k - 1]`` for a
        folded-in user with k ratings (1 <= k <= their number), else 1. Read after ``query`` (which fits the row)."""
        weights = self.options.new_user_weights
        fitted = self._fitted.get(user_id) if weights else None
        count = 0 if fitted is None else fitted[2]
        return weights[count - 1] if 1 <= count <= len(weights) else 1.0

    # ---- validation ---------------------------------------------------------------------------------------
    def _require_rating(self) -> None:
        if not self.options.has_rating:
            raise Unsupported("this model has no rating head (trained with task=ranking); use task=rating or joint")

    def _require_user(self, user_id) -> int:
        """The user's index for the model (``_model_row``); UnknownUser without events, UntrainedUser when the model
        cannot serve the user."""
        if self.log.length(check_user_id(user_id)) == 0:
            raise UnknownUser(f"unknown user_id {user_id!r}: no interactions in the data and none ingested")
        row = self._model_row(user_id)
        if row is None:
            raise UntrainedUser(
                f"user_id {user_id!r} is not a user of the training data: this model corrects a frozen rating base "
                f"(model.rating_base={self.base.path!r}) with each training user's factors, which a new user does not "
                "have, and new users are refused (--new-users refuse); their events are recorded. Serve them with "
                "--new-users fold_in (their factors fitted to their ratings) or average_user (the base's average "
                "training user), or a run trained without model.rating_base"
            )
        return row

    def _model_row(self, user_id) -> int | None:
        """The user's index for the model: the log's row (the data's user index for users of the data); under a rating
        base a new user's is their own row fitted to their ratings (``fold_in``), the base's average training user
        (``cold``), or None when new users are refused."""
        row = self.log.row(user_id)
        if self.base is None or (row is not None and row < self.log.store_users):
            return row
        if self.fold_in is None or row is None:
            return self.cold
        return self._folded_row(user_id, row - self.log.store_users)

    def _folded_row(self, user_id, index: int) -> int:
        """New user number ``index``'s row of the base (``FoldIn``), fitted to their ratings when it has not been since
        this core started, and again once they have ``REFIT_GROWTH`` more ratings than at the last fit (at least one
        more): at each rating up to 20 ratings, then at every 5% more, so a long history is not rebuilt at each rating.
        A refit drops the user's state (its steps read errors under the row), which the next query rebuilds."""
        n_events = self.log.length(user_id)
        looked, last, _ = self._fitted.get(user_id, (None, None, 0))
        if n_events != looked:  # the log is read only when the user has events it has not seen (not at every query)
            items, times, ratings = self.log.events(user_id)
            rated = ratings != 0.0  # 0.0: no rating given
            count = int(rated.sum())
            if last is None or count >= last + max(1, int(last * REFIT_GROWTH)):
                self.fold_in.fit(index, torch.from_numpy(items[rated]), torch.from_numpy(ratings[rated]),
                                 torch.from_numpy(times[rated]), noise=self.options.noise_for(count))  # fmt: skip
                last = count
                self.cache.drop(user_id)
            self._fitted[user_id] = (n_events, last, count)
        return self.fold_in.row(index)


def record_event(served, cores: list[ServingCore], user_id, item_id, timestamp, rating=None) -> dict:
    """``ingest``'s work for ``served`` (a core, or an ensemble of ``cores`` on one log): the event checked, written
    once to the log and the journal, then each of ``cores`` advanced; ``{"user_id", "n_events", "in_order"}``."""
    user_id = check_user_id(user_id)
    index = served.catalogue.lookup(item_id)
    when = check_timestamp(timestamp, "timestamp")
    value = check_rating(rating, served.options.rating_range)
    event = Event(index, when, value)
    in_order = served.log.append(user_id, event)
    if served.journal is not None:
        served.journal.write(user_id, int(served.catalogue.item_ids[index]), when, rating if rating is None else value)
    n_events = served.log.length(user_id)
    for core in cores:
        core.advance(user_id, event, in_order, n_events)
    return {"user_id": user_id, "n_events": n_events, "in_order": in_order}


def top_items(scores: torch.Tensor, k: int, seen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` item indices (1..N) of ``scores`` (N,) and their scores, best first, ties by item index;
    ``seen`` item indices excluded (fewer than ``k`` when fewer remain)."""
    if seen is not None:
        scores = scores.clone()
        scores[torch.from_numpy(seen - 1)] = float("-inf")
    values, order = torch.topk(scores, k)  # (k,), ties broken by item index below
    values, order = values.numpy(), order.numpy()
    finite = np.isfinite(values)
    if not finite.all():
        values, order = values[finite], order[finite]
    best = np.lexsort((order, -values))
    return order[best] + 1, values[best]


def item_rows(catalogue: Catalogue, items: np.ndarray, scores: np.ndarray, ratings: list | None) -> list[dict]:
    """``recommend``'s rows: ``item_id`` (original), ``title``, ``genres``, ``score``, ``rating`` (None without one)."""
    rows, out = catalogue.rows, []
    for j, (i, score) in enumerate(zip(items.tolist(), scores.tolist())):
        item_id, title, genres = rows[i]
        out.append({"item_id": item_id, "title": title, "genres": None if genres is None else list(genres),
                    "score": score, "rating": None if ratings is None else ratings[j]})  # fmt: skip
    return out
