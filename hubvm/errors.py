"""The one exception type for mistakes a user can fix; tasks turn it into invoke's Exit (one line, no traceback)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A problem the user can fix: the message is one line that says what is wrong and what to do."""


class ConfigError(UserError):
    """A setting with a bad value: names the key, the value and the fix."""

    def __init__(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key} = {value!r}: {problem}; {fix}")
