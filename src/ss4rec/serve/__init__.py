"""Serving a trained sequential recommender: a framework-free core (``ServingCore``, ``load_core``) and an
HTTP app around it (``ss4rec.serve.app.create_app``; ``python -m ss4rec.serve RUN_DIR_OR_CKPT``)."""

from ss4rec.serve.core import ServeOptions, ServingCore
from ss4rec.serve.loading import load_core

__all__ = ["ServeOptions", "ServingCore", "load_core"]
