"""Serving cores of SS4Rec on small rating data with random rating bases (``rating_fixtures``), float64."""

from __future__ import annotations

import torch

from rating_fixtures import base_runs
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.serve import ServeOptions, ServingCore
from ss4rec.serve.catalogue import Catalogue
from ss4rec.serve.interactions import InteractionLog

DRIFT = {"rating_base_residuals": True, "rating_base_drift": 2, "rating_base_drift_recent": 1,
         "rating_base_drift_calibrate": True}  # fmt: skip


def based_model(kind: str, root, store, **options) -> SS4Rec:
    """SS4Rec on a rating base of ``kind``, every weight the serving path reads non-zero, float64."""
    base, heldout = base_runs(kind, root, store)
    torch.manual_seed(6)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=base, rating_base_heldout=heldout, **options)  # fmt: skip
    model.rating_base.fill(store)
    with torch.no_grad():
        for parameter in model.rating_head.mlp[-1].parameters():  # the head's output layer (zero at the start)
            parameter.normal_()
        for pname, parameter in model.named_parameters():
            if pname.startswith(("residual_input", "drift_weight", "calibration")):
                parameter.normal_()
    return model.double().eval()


def core_of(
    model, store, drop_last: int = 1, history: str = "full", log: InteractionLog | None = None, new_users: str = "average_user",
    **options,
) -> ServingCore:
    """A core of ``model`` on ``store`` without each user's last ``drop_last`` events, windows of 50, or on ``log``;
    ``options``: more of ``ServeOptions``."""
    catalogue = Catalogue(store.item_map, store.item_titles, store.item_genres, store.info.get("genres") or ())
    log = InteractionLog.from_store(store, drop_last=drop_last) if log is None else log
    options = ServeOptions(max_len=50, history=history, has_rating=True, new_users=new_users, **options)
    core = ServingCore(model, catalogue, log, options)
    core.store = store
    return core
