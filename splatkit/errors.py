"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (bad input, wrong option, unwritable folder).
The CLI prints its message (what went wrong, then what to do) and exits with code 2, never a
traceback. Anything else is a bug in splatkit and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, with a hint on what to do about it.

    ``str(err)`` is one or two plain lines: what went wrong, then what to do.
    """

    exit_code = 2

    def __init__(self, what: str, todo: str | None = None):
        self.what = what
        self.todo = todo
        super().__init__(what if not todo else f"{what}\n{todo}")
