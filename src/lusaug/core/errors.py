"""One error style for every stage: library errors say what to do; stage scripts print them.

Every error a user can fix (bad data, a missing input, a wrong param) subclasses
:class:`LusaugError`. Stage scripts wrap their library call in :func:`stage_errors`, which turns
such an error into ``SystemExit("<stage> failed: <message>")``: one line, no traceback, non-zero
exit, so ``dvc repro`` stops with the reason. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class LusaugError(Exception):
    """An error the user can act on; the message says what is wrong and what to do."""


@contextlib.contextmanager
def stage_errors(stage: str) -> Iterator[None]:
    """Exit with ``<stage> failed: <message>`` on a :class:`LusaugError` or a missing file."""
    try:
        yield
    except (LusaugError, FileNotFoundError) as err:
        raise SystemExit(f"{stage} failed: {err}") from None
