"""The kinds of a setting's value: what a value in a YAML or JSON layer must be (`Kind.accepts`), its canonical
Python type (`Kind.coerce`), and how an INVOKE_* string becomes one (`Kind.from_env`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    name: str          # text | integer | number | boolean | list
    wanted: str        # how the kind is described in an error ("a whole number", ...)

    def accepts(self, value: Any) -> bool:
        """Whether a value read from a YAML/JSON layer has this kind (before any range or pattern check)."""
        if self.name == "text":
            return isinstance(value, (str, int, float)) and not isinstance(value, bool)
        if self.name == "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and _DIGITS.fullmatch(value.strip()) is not None)
        if self.name == "number":
            return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                isinstance(value, str) and _parse_number(value) is not None)
        if self.name == "boolean":
            return isinstance(value, bool)
        if self.name == "list":
            if isinstance(value, str):
                return True  # one item where a list is wanted: a common slip, taken as a list of one
            return isinstance(value, (list, tuple)) and all(
                isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value)
        if self.name == "mapping":
            return isinstance(value, Mapping) and all(
                isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                for k, v in value.items())
        raise AssertionError(self.name)

    def coerce(self, value: Any) -> Any:
        """A value this kind accepts, in its canonical Python type."""
        if self.name == "text":
            return value if isinstance(value, str) else _number_text(value)
        if self.name == "integer":
            return int(value) if isinstance(value, int) else int(value.strip())
        if self.name == "number":
            number = float(value) if not isinstance(value, str) else _parse_number(value)
            return int(number) if float(number).is_integer() else number
        if self.name == "list":
            if isinstance(value, str):
                return (value,) if value else ()
            return tuple(item if isinstance(item, str) else _number_text(item) for item in value)
        if self.name == "mapping":
            return {k: v if isinstance(v, str) else _number_text(v) for k, v in sorted(value.items())}
        return value

    def from_env(self, text: str) -> Any:
        """An INVOKE_* string as a value of this kind; raises ValueError with the reason."""
        if self.name == "text":
            return text
        if self.name == "integer":
            if not _DIGITS.fullmatch(text.strip()):
                raise ValueError("is not a whole number")
            return int(text.strip())
        if self.name == "number":
            number = _parse_number(text)
            if number is None:
                raise ValueError("is not a number")
            return self.coerce(number)  # "2" is 2, as it is in a YAML file
        if self.name == "boolean":
            word = text.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError("is not true or false")
        if self.name == "list":
            return _env_list(text)
        if self.name == "mapping":
            return _env_mapping(text)
        raise AssertionError(self.name)


TEXT = Kind("text", "text")
INTEGER = Kind("integer", "a whole number")
NUMBER = Kind("number", "a number")
BOOLEAN = Kind("boolean", "true or false")
LIST = Kind("list", "a list such as [a, b]")
MAPPING = Kind("mapping", "a mapping such as {key: value}")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes '²', which int() refuses


def _parse_number(text: str) -> float | None:
    if not re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and "e" not in repr(value) \
        else str(value)


def _env_list(text: str) -> tuple[str, ...]:
    """`[a, b]` (a YAML flow list) or one item; "" is the empty list."""
    import yaml

    stripped = text.strip()
    if not stripped:
        return ()
    if not stripped.startswith("["):
        return (text,)
    try:
        value = yaml.safe_load(stripped)
    except yaml.YAMLError:
        raise ValueError("is not a YAML list such as [a, b]") from None
    if not isinstance(value, list) or not LIST.accepts(value):
        raise ValueError("is not a list of plain values such as [a, b]")
    return LIST.coerce(value)


def _env_mapping(text: str) -> dict[str, str]:
    """`{a: b, c: d}` (a YAML flow mapping); "" is the empty mapping."""
    import yaml

    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError("is not a YAML mapping such as {key: value}") from None
    if not MAPPING.accepts(value):
        raise ValueError("is not a mapping of plain values such as {key: value}")
    return MAPPING.coerce(value)
