"""Each kind's shapes in a layer and its parsing of INVOKE_* strings."""

from __future__ import annotations

import pytest

from hubvm.config.kinds import BOOLEAN, INTEGER, LIST, NUMBER, TEXT, Kind


@pytest.mark.parametrize(("kind", "text", "value"), [
    (INTEGER, "4", 4), (INTEGER, " 12 ", 12),
    (NUMBER, "0.5", 0.5), (NUMBER, "2", 2.0),
    (BOOLEAN, "yes", True), (BOOLEAN, "OFF", False), (BOOLEAN, "0", False),
    (LIST, "[numpy, scipy]", ("numpy", "scipy")), (LIST, "pandas", ("pandas",)), (LIST, "", ()),
    (TEXT, "a b", "a b"),
])
def test_environment_strings_become_values_of_the_kind(kind: Kind, text: str, value: object) -> None:
    assert kind.from_env(text) == value


@pytest.mark.parametrize(("kind", "text"), [
    (INTEGER, "²"), (INTEGER, "4.0"), (INTEGER, "-1"), (INTEGER, ""),
    (NUMBER, "nan"), (NUMBER, "inf"), (NUMBER, "1e400"), (NUMBER, "½"),
    (BOOLEAN, "maybe"), (BOOLEAN, ""),
    (LIST, "[unclosed"), (LIST, "[[nested]]"), (LIST, "[a: b]"), (LIST, "[null]"),
])
def test_environment_strings_of_the_wrong_kind_are_refused(kind: Kind, text: str) -> None:
    with pytest.raises(ValueError):
        kind.from_env(text)


@pytest.mark.parametrize(("kind", "value", "accepted"), [
    (TEXT, "x", True), (TEXT, 5, True), (TEXT, True, False), (TEXT, ["x"], False),
    (TEXT, {"a": 1}, False), (TEXT, None, False),
    (INTEGER, 5, True), (INTEGER, "5", True), (INTEGER, True, False), (INTEGER, 5.5, False),
    (NUMBER, 0.5, True), (NUMBER, "0.5", True), (NUMBER, False, False),
    (BOOLEAN, True, True), (BOOLEAN, "true", False), (BOOLEAN, 1, False),
    (LIST, ["a", 1], True), (LIST, "a", True), (LIST, [None], False),
    (LIST, [["a"]], False),
    (LIST, {"a": 1}, False), (LIST, [True], False),
])
def test_each_kind_accepts_only_its_shapes(kind: Kind, value: object, accepted: bool) -> None:
    assert kind.accepts(value) is accepted
