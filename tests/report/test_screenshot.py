"""The dashboard renders in headless Chromium: the tables are in the DOM, every image decodes and shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from ss4rec.report import build_report

from .conftest import MODELS

CANDIDATES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "headless_shell",
)
CHROMIUM = os.environ.get("CHROMIUM") or next((p for c in CANDIDATES if (p := shutil.which(c))), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/chrome)",
)

WIDTH, HEIGHT = 1400, 2400


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def page(runs_dir: Path, tmp_path: Path) -> Path:
    return build_report(runs_dir, tmp_path / "reports" / "ml100k")["html"]


def test_page_text_has_the_tables_and_every_image_renders(page: Path, tmp_path: Path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert '<table id="summary">' in dom
    summary = dom[dom.index('<table id="summary">') :]
    summary = summary[: summary.index("</table>")]
    for model in MODELS:
        assert f"<td>{model}</td>" in summary
    assert "NDCG@10" in summary and "RMSE" in summary and "±" in summary
    n_images = len(re.findall(r"<img ", dom))
    assert n_images >= 10
    # set by the page's onload script: images that finished loading with a real size
    assert f'data-images-rendered="{n_images}"' in dom


def test_screenshot_shows_the_charts(page: Path, tmp_path: Path):
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a blank or text-only page compresses far smaller
    pixels = (image.imread(shot)[..., :3] * 255).round().astype(np.int16)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # the first group's bars are matplotlib's tab:blue (31, 119, 180): the plots really are drawn
    blue = (np.abs(pixels - np.array([31, 119, 180])).max(-1) <= 3).sum()
    assert blue > 2000
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
