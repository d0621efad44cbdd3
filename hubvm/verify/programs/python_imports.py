"""For each distribution named on the command line: its version, the module it provides (pip names are not import
names: scikit-learn -> sklearn, PyYAML -> yaml), and whether importing that module works. Runs with the Python of
the users' environment; prints one @@hubvm-item JSON line per name."""

import importlib
import importlib.metadata as md
import json
import re
import sys


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out), flush=True)


try:
    tops = md.packages_distributions()
except AttributeError:
    tops = {}
for name in sys.argv[1:]:
    out = {"name": name}
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        out["error"] = "not installed"
        item(out)
        continue
    out["version"] = dist.version
    own = norm(dist.metadata["Name"] or name)
    modules = sorted(m for m, dists in tops.items() if own in {norm(d) for d in dists})
    modules = modules or (dist.read_text("top_level.txt") or "").split()
    public = [m for m in modules if not m.startswith("_")] or modules or [own.replace("-", "_")]
    module = own.replace("-", "_") if own.replace("-", "_") in public else public[0]
    out["module"] = module
    try:
        importlib.import_module(module)
    except BaseException as error:
        text = (str(error).splitlines() or [""])[0][:200]
        out["error"] = f"import {module}: {type(error).__name__}: {text}"
    item(out)
