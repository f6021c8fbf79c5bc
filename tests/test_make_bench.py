"""``make bench`` runs every script it lists with no arguments: none of them may require one (a script that reads
trained runs belongs in the Makefile's filter-out list). Read from the scripts' source, not by running them."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench_scripts() -> list[str]:
    """The scripts ``make bench`` would run, from make's dry run."""
    out = subprocess.run(["make", "-n", "bench", f"PY={sys.executable}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = re.search(r"for b in (.*?); do", out)
    assert found, f"no script loop in make -n bench:\n{out}"
    return found.group(1).split()


def required_arguments(source: str) -> list[str]:
    """The arguments an argparse parser built in ``source`` requires: positionals (unless ``nargs`` is ``?`` or
    ``*``) and options with ``required=True``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name, keywords = node.args[0].value, {k.arg: k.value for k in node.keywords}
        nargs = keywords.get("nargs")
        optional_positional = isinstance(nargs, ast.Constant) and nargs.value in ("?", "*")
        required = keywords.get("required")
        if (not name.startswith("-") and not optional_positional) or (isinstance(required, ast.Constant) and required.value is True):
            out.append(name)
    return out


def test_required_arguments_reads_positionals_and_required_options():
    source = """
p.add_argument("models", nargs="+")
p.add_argument("--root", required=True)
p.add_argument("--seeds", nargs="+", default=[0])
p.add_argument("maybe", nargs="?")
p.add_argument("--flag", action="store_true")
"""
    assert required_arguments(source) == ["models", "--root"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_script_make_bench_runs_needs_no_argument():
    scripts = bench_scripts()
    assert "benchmarks/throughput.py" in scripts and "benchmarks/pooled_splits.py" not in scripts
    for script in scripts:
        needed = required_arguments((ROOT / script).read_text())
        assert needed == [], f"make bench runs {script} with no arguments, but it requires {needed}"
