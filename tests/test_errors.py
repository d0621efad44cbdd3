"""The one exception type for mistakes a user can fix, and how a task turns it into one line and exit status 1."""

from __future__ import annotations

import pytest
from invoke import Exit

from hubvm.errors import ConfigError, UserError, user_errors


def test_a_config_error_names_the_key_the_value_and_the_fix() -> None:
    error = ConfigError("vm.cpus", "four", "is not a whole number", "set a number from 1 to 64")
    assert str(error) == "vm.cpus = 'four': is not a whole number; set a number from 1 to 64"
    assert str(error.came_from("INVOKE_VM_CPUS")) == ("vm.cpus = 'four': is not a whole number (from INVOKE_VM_CPUS); "
                                                      "set a number from 1 to 64")


def test_values_are_shown_on_one_line_and_cut_to_a_readable_length() -> None:
    assert "\\n" in str(ConfigError("vm.hostname", "a\nb", "holds a control character", "remove it"))
    assert "\n" not in str(ConfigError("vm.hostname", "a\nb", "holds a control character", "remove it"))
    long = str(ConfigError("x.y", "z" * 500, "is too long", "shorten it"))
    assert len(long) < 160 and "..." in long


def test_a_task_turns_a_user_error_into_exit_one_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def task() -> None:
        print("what was printed")
        raise UserError("no box at builds/boxes/x.box; build it first: hubvm pack")

    with pytest.raises(Exit) as caught:
        task()
    assert (caught.value.code, caught.value.message) == (1, "error: no box at builds/boxes/x.box; build it first: "
                                                            "hubvm pack")
    assert capsys.readouterr().out == "what was printed\n"


def test_other_exceptions_are_not_hidden() -> None:
    @user_errors
    def task() -> None:
        raise KeyError("a defect")

    with pytest.raises(KeyError):
        task()
