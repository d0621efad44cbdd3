"""The one exception type for mistakes a user can fix, and `user_errors`, which makes it invoke's one-line Exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit


class UserError(Exception):
    """A problem the user can fix: the message is one line that says what is wrong and what to do."""


class ConfigError(UserError):
    """A setting with a bad value: names the key, the value and the fix."""

    def __init__(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key} = {_shown(value)}: {problem}; {fix}")

    def came_from(self, source: str | None) -> ConfigError:
        """The same error, saying which layer (file, variable, flag) the value came from."""
        if not source or "(in " in self.problem or "(from " in self.problem:
            return self
        return ConfigError(self.key, self.value, f"{self.problem} (from {source})", self.fix)


def _shown(value: Any) -> str:
    """A value as an error shows it: repr (so a newline shows as \\n), cut to a readable length."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 100 else text[:97] + "..."


def user_errors(body: Callable[..., Any]) -> Callable[..., Any]:
    """A UserError becomes invoke's Exit: its one line on stderr and exit status 1, no traceback."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except UserError as error:
            sys.stdout.flush()  # what was printed comes before the error line
            raise Exit(f"error: {error}", 1) from None

    return wrapper
