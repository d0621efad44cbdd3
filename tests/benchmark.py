"""How long the tool itself takes (not the builds): a benchmark to run by hand, not a test.

    .venv/bin/python tests/benchmark.py [--runs N]

In a scratch copy of the project (builds/ of its own, HOME and the probe cache of its own), it times:
`hubvm --list`; `hubvm -f config/cloud.yaml --dry all` with nothing built (after one `hubvm check` has cached the
tool probes, as on a machine in use); a no-op `hubvm -f config/cloud.yaml all` whose box and export are current;
and `hubvm render`; and, for comparison, a bare invoke project's `invoke --list`. It prints each command's median,
fastest and slowest wall time and its median CPU time (user + system of the child). The README and the closing
notes quote its output.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import copy_project  # noqa: E402

BIN = Path(sys.executable).parent
TARGETS = {"--list": 0.3, "--dry all": 2.0, "no-op all": 1.0}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.returncode


def make_current(project: Path) -> None:
    """A box and an export that are current for config/cloud.yaml: `all` has nothing to do."""
    sys.path.insert(0, str(project))
    from hubvm import digests
    from hubvm.artifacts import artifact_paths
    from hubvm.config.layers import Layers, defaults_layer, file_layer, read_file
    from hubvm.config.settings import parse
    from hubvm.layout import Layout

    profile = project / "config" / "cloud.yaml"
    s = parse(Layers((defaults_layer(project), file_layer(read_file(profile), "cloud.yaml", shared=False)),
                     project))
    layout = Layout.of(s)
    layout.boxes_dir.mkdir(parents=True, exist_ok=True)
    layout.box_file.write_bytes(b"box")
    digests.write(layout.box_stamp, digests.box_digest(s))
    for artifact in artifact_paths(s, layout):
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.mkdir() if artifact.name == "ovf" else artifact.write_bytes(b"x")
    digests.write(layout.export_stamp, digests.export_digest(s, digests.box_digest(s)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="hubvm-bench-"))
    try:
        project = copy_project(scratch / "project")
        home = scratch / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(scratch / "cache"))
        hubvm = str(BIN / "hubvm")
        bare = scratch / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
        subprocess.run([hubvm, "-f", "config/cloud.yaml", "check"], cwd=project, env=env, capture_output=True)

        cases = [
            ("--list", [hubvm, "--list"], project, None),
            ("--dry all", [hubvm, "-f", "config/cloud.yaml", "--dry", "all"], project, None),
            ("render", [hubvm, "render"], project, None),
            ("no-op all", [hubvm, "-f", "config/cloud.yaml", "all"], project, make_current),
            ("bare invoke --list", [str(BIN / "invoke"), "--list"], bare, None),
        ]
        print(f"{args.runs} runs each, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        print(f"{'command':<20} {'median':>8} {'fastest':>8} {'slowest':>8} {'CPU':>8}  target")
        for name, argv, cwd, prepare in cases:
            if prepare is not None:
                prepare(cwd)
            runs = [timed(argv, cwd, env) for _ in range(args.runs)]
            codes = {code for _, _, code in runs}
            walls = [wall for wall, _, _ in runs]
            cpu = statistics.median(c for _, c, _ in runs)
            target = TARGETS.get(name)
            met = target is not None and statistics.median(walls) <= target
            verdict = "" if target is None else f"<= {target} s: {'met' if met else 'MISSED'}"
            print(f"{name:<20} {statistics.median(walls):7.2f}s {min(walls):7.2f}s {max(walls):7.2f}s {cpu:7.2f}s  "
                  f"{verdict}{'' if codes == {0} else f' (exit {sorted(codes)})'}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
