"""Every command a user can run (`python -m ss4rec...`) is documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def commands() -> list[str]:
    """Modules with a command-line entry point: a package's ``__main__.py`` or a module's ``__main__`` guard."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__main__.py":
            found.append(".".join(path.parent.relative_to(SRC).parts))
        elif 'if __name__ == "__main__"' in path.read_text():
            found.append(".".join(path.with_suffix("").relative_to(SRC).parts))
    return found


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    found = commands()
    assert {"ss4rec.report", "ss4rec.report.progress", "ss4rec.serve"} <= set(found)  # the scan finds both kinds
    # "python -m ss4rec.report" must not count for "python -m ss4rec.report.progress"
    missing = [m for m in found if not re.search(rf"python -m {re.escape(m)}(?![\w.])", readme)]
    assert not missing, f"commands with no `python -m <module>` in README.md: {missing}"
