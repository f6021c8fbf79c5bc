"""The entry points' user-error contract, asserted the same way for every command: exit status, a message
matching ``pattern``, an ``error: `` line and no traceback."""

import re
from collections.abc import Callable

import pytest


def expect_clean_error(result: tuple[int, str], pattern: str, status: int = 2) -> str:
    code, err = result
    assert code == status, err
    assert re.search(pattern, err), err
    assert re.search(r"^error: ", err, re.MULTILINE) and "Traceback" not in err, err
    return err


def exit_of(main: Callable[[list[str]], int], argv: list[str], capsys) -> tuple[int, str]:
    """Run an entry point's ``main(argv)`` that must exit: (its exit status, what it printed on stderr)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err
