"""Every command through one runner: echoed, in its folder (quoted), streamed to the step's log; probes run even
under --dry; a dry step writes no log."""

from __future__ import annotations

from pathlib import Path

from invoke import Config, Context, MockContext, Result

from hubvm.layout import Layout
from hubvm.shell import Shell, q, rel, step


def test_commands_run_in_their_folder_quoted() -> None:
    c = MockContext(config=Config(), run={"cd '/p q' && packer build": Result()})
    Shell(c).run("packer build", cwd=Path("/p q"))
    options = c.run.call_args.kwargs
    assert (options["echo"], options["pty"]) == (True, False)


def test_a_probe_runs_under_dry_quietly_and_may_fail() -> None:
    c = Context(config=Config(overrides={"run": {"dry": True}}))
    result = Shell(c).probe("echo probed; exit 3")
    assert (result.stdout.strip(), result.exited) == ("probed", 3)


def test_a_dry_step_writes_no_log(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "vm", "debian12", "libvirt")
    dry = Context(config=Config(overrides={"run": {"dry": True}}))
    with step(dry, "pack", layout) as sh:
        assert sh.dry
    assert not layout.logs_dir.exists()
    real = Context(config=Config())
    with step(real, "pack", layout) as sh:
        sh.run("echo written", in_stream=False)
    assert "written" in layout.log("pack").read_text()


def test_quoting_and_relative_paths() -> None:
    assert q("a b") == "'a b'" and q("plain") == "plain"
    assert rel(Path("/p/builds/x"), Path("/p")) == "builds/x"
    assert rel(Path("/elsewhere/x"), Path("/p")) == "/elsewhere/x"


def test_a_steps_log_holds_the_commands_it_ran(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "vm", "debian12", "libvirt")
    with step(Context(config=Config()), "pack", layout) as sh:
        sh.run("echo hello", in_stream=False)
    assert "$ echo hello\nhello\n" in layout.log("pack").read_text()
