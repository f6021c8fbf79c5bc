"""Where configs and data live."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: the repository's ``conf/`` (the package is installed editable from the checkout); SS4REC_CONFIG_DIR overrides
CONFIG_DIR = Path(os.environ.get("SS4REC_CONFIG_DIR", Path(__file__).resolve().parents[2] / "conf"))


def data_dir() -> Path:
    """Default folder for downloads and prepared caches: $SS4REC_DATA_DIR, else the user's cache dir."""
    return Path(os.environ.get("SS4REC_DATA_DIR") or platformdirs.user_cache_dir("ss4rec"))
