"""CI's rule for skipped tests: every skip is listed with its reason, and a skip not on the allow-list fails.

Active when ``SS4REC_STRICT_SKIPS=1`` (``.ci/run`` sets it). A test CI is meant to run that skips there
(a missing reference source, an unbuilt kernel, a missing dev dependency, a config not found) would leave
CI green without it; under this rule it fails the session instead. The allowed skips are the ones a
CPU-only CI machine cannot avoid:

* CUDA / GPU-only tests (no GPU there; or, the other way round, a GPU is visible);
* mamba_ssm's real (CUDA) package not importable: only its fused-kernel test needs it, its parity tests
  load its source instead (``tests/mamba_reference.py``);
* the Chromium screenshot test, only where ``.ci/run`` could not install Chromium
  (it then sets ``SS4REC_CHROMIUM_UNAVAILABLE=1``).

Loaded by ``tests/conftest.py``; ``tests/test_skip_policy.py`` runs it on made-up sessions.
"""

from __future__ import annotations

import os
import re

import pytest

STRICT_ENV = "SS4REC_STRICT_SKIPS"
CHROMIUM_ENV = "SS4REC_CHROMIUM_UNAVAILABLE"

# (why this skip is acceptable, pattern its reason must match)
ALLOWED: list[tuple[str, re.Pattern[str]]] = [
    ("CUDA / GPU only", re.compile(r"needs a CUDA device|a GPU is visible here|run on CUDA only")),
    ("mamba_ssm's CUDA package not installed", re.compile(r"^could not import 'mamba_ssm(\.[\w.]+)?'")),
]
CHROMIUM = ("Chromium could not be installed", re.compile(r"^no chromium binary on PATH"))


def allowed_skips() -> list[tuple[str, re.Pattern[str]]]:
    return ALLOWED + ([CHROMIUM] if os.environ.get(CHROMIUM_ENV) == "1" else [])


def why_allowed(reason: str) -> str | None:
    """The allow-list entry a skip reason matches, or None."""
    return next((why for why, pattern in allowed_skips() if pattern.search(reason)), None)


def _reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _strict() -> bool:
    return os.environ.get(STRICT_ENV) == "1"


def skipped(config) -> list[tuple[str, str]]:
    """(node id, reason) of every skipped test or module (collection skips included; xfails are not skips)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reports = reporter.stats.get("skipped", []) if reporter is not None else []
    return [(report.nodeid, _reason(report)) for report in reports]


def disallowed(config) -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in skipped(config) if why_allowed(reason) is None]


def pytest_sessionfinish(session, exitstatus):
    if _strict() and exitstatus == pytest.ExitCode.OK and disallowed(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _strict():
        return
    listed = skipped(config)
    terminalreporter.section(f"skipped tests ({STRICT_ENV}=1)")
    for nodeid, reason in listed:
        why = why_allowed(reason)
        verdict = f"allowed ({why})" if why else "NOT ALLOWED"
        terminalreporter.write_line(f"{verdict}: {nodeid}: {reason}")
    bad = disallowed(config)
    if bad:
        terminalreporter.write_line(
            f"{len(bad)} skip(s) not on the allow-list (tests/skip_policy.py): the session fails", red=True
        )
    else:
        terminalreporter.write_line(f"{len(listed)} skip(s), all on the allow-list")
