"""The entry points' user-error contract, asserted the same way for every command: exit status, a message
matching ``pattern``, an ``error: `` line and no traceback."""

import re


def expect_clean_error(result: tuple[int, str], pattern: str, status: int = 2) -> str:
    code, err = result
    assert code == status, err
    assert re.search(pattern, err), err
    assert re.search(r"^error: ", err, re.MULTILINE) and "Traceback" not in err, err
    return err
