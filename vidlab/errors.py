"""What counts as a user's mistake, and the one line that says it.

The command line shows every user error as one line on stderr (exit status 2, no traceback;
`--debug` shows it): the field or file, the value, and what is allowed. Anything else is a bug
and keeps its traceback. `UserInputError` is the error this package raises for a bad value outside
a request's own fields (a strategy name, a model folder, an option, a device); the request's
fields have `config.RequestError`, which names every bad field at once.
"""
from __future__ import annotations

import errno
import json


class UserError(Exception):
    """The mark of a user's mistake: every error type the command line shows as one line derives from it
    (beside its usual base: ValueError, OSError, ...), so this module needs to know none of them."""


class UserInputError(UserError, ValueError):
    """A bad value a user gave: `field` (or file), the value, and what is wrong with it and what is allowed,
    as one phrase that follows `field=value` ("is not one of [...]")."""

    def __init__(self, field: str, value, problem: str):
        self.field, self.value, self.problem = field, value, problem
        super().__init__(f"{field}={short(value)} {problem}")


class CorruptFileError(UserError, ValueError):
    """A file that exists but cannot be read (a model part, a manifest): which file, and what is wrong."""


def short(value, limit: int = 80) -> str:
    """repr of a value cut to `limit` characters (a 5,000-digit seed or a deep option stays one short line);
    floats as their shortest repr rounded to 6 significant digits, so 0.41562499999999997 reads 0.415625."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        try:
            text = repr(value)
        except (RecursionError, ValueError):  # nested past repr's depth; an int past str's digit limit
            text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit - 12] + f"... ({len(text):,} chars)"


def is_user_error(err: BaseException) -> bool:
    """Whether the command line shows `err` as one line: a `UserError`, a full disk, or an input
    nested past Python's recursion limit."""
    return (isinstance(err, UserError) or isinstance(err, RecursionError)
            or (isinstance(err, OSError) and err.errno == errno.ENOSPC))


def one_line(err: BaseException) -> str:
    """The error's message on one line (the lines of an error naming several fields, like
    `config.RequestError` with its `problems`, joined by '; ')."""
    import sys
    if isinstance(err, RecursionError):
        return (f"an input is nested too deeply to read (Python's recursion limit is {sys.getrecursionlimit()} "
                f"levels); flatten it")
    if isinstance(getattr(err, "problems", None), list):
        head = str(err).split("\n", 1)[0].rstrip(":")
        return head + ": " + "; ".join(f"{field} = {short(value)}: {allowed}"
                                         for field, value, allowed in err.problems)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"no space left on the device writing {err.filename or 'a file'}: free space and run again"
    return " ".join(str(err).split())


def read_json_config(path) -> dict:
    """A model folder's JSON config, or CorruptFileError naming the file and what is wrong."""
    from pathlib import Path
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err}); restore the file from its source") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: a config must be a JSON object, found {type(data).__name__}")
    return data
