"""CI's skip rule (tests/skip_policy.py) on made-up sessions: a skip not on the allow-list fails the run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_only():
    pass

def test_fused_kernels():
    pytest.importorskip("mamba_ssm.modules.mamba_simple")
"""


def _run(pytester, monkeypatch, strict: bool, body: str = "", chromium_missing: bool = False):
    monkeypatch.setenv("SS4REC_STRICT_SKIPS", "1" if strict else "0")
    monkeypatch.setenv("SS4REC_CHROMIUM_UNAVAILABLE", "1" if chromium_missing else "0")
    pytester.makepyfile(test_made_up=TESTS + body)
    return pytester.runpytest("-p", "skip_policy", "-p", "no:cacheprovider")


def test_allowed_skips_pass_and_are_listed(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, strict=True)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*skipped tests (SS4REC_STRICT_SKIPS=1)*",
        "allowed (CUDA / GPU only): test_made_up.py::test_gpu_only: needs a CUDA device",
        "allowed (mamba_ssm's CUDA package not installed): test_made_up.py::test_fused_kernels: could not import*",
        "2 skip(s), all on the allow-list",
    ])


MISSING_SOURCE = """
def test_parity():
    pytest.skip("mamba_ssm is not installed and its source is not at /x (run `make reference`)")
"""


def test_a_skip_not_on_the_list_fails_the_session(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, strict=True, body=MISSING_SOURCE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "NOT ALLOWED: test_made_up.py::test_parity: mamba_ssm is not installed*",
        "1 skip(s) not on the allow-list*",
    ])


def test_outside_ci_skips_do_not_fail(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, strict=False, body=MISSING_SOURCE)
    assert result.ret == pytest.ExitCode.OK
    assert "skipped tests (SS4REC_STRICT_SKIPS" not in result.stdout.str()


SCREENSHOT = """
@pytest.mark.skipif(True, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")
def test_screenshot():
    pass
"""


@pytest.mark.parametrize("missing", [False, True])
def test_chromium_skip_is_allowed_only_where_ci_could_not_install_it(pytester, monkeypatch, missing):
    result = _run(pytester, monkeypatch, strict=True, body=SCREENSHOT, chromium_missing=missing)
    assert result.ret == (pytest.ExitCode.OK if missing else pytest.ExitCode.TESTS_FAILED)


def test_a_module_skipped_at_collection_counts(pytester, monkeypatch):
    monkeypatch.setenv("SS4REC_STRICT_SKIPS", "1")
    pytester.makepyfile(test_a="def test_a():\n    pass\n",
                        test_b="import pytest\npytest.importorskip('s5_missing_dev_dependency')\n")
    result = pytester.runpytest("-p", "skip_policy", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["NOT ALLOWED: test_b.py: could not import 's5_missing_dev_dependency'*"])
