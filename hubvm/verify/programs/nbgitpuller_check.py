"""nbgitpuller as the users' servers find it. Run with the Python of the users' environment: imports nbgitpuller (its
version, and that it declares a jupyter_server extension), asks jupyter_server whether the extension is enabled (its
extension configuration from every Jupyter config folder, merged as the server merges it when it starts), and finds
git, which nbgitpuller runs. One @@hubvm-item JSON line."""

import json
import shutil
import subprocess


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out), flush=True)


def first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"


out = {}
try:
    import nbgitpuller
except ModuleNotFoundError as error:
    out["error"] = "not installed" if error.name == "nbgitpuller" else f"import nbgitpuller: {first_line(error)}"
except BaseException as error:  # a broken install can raise anything while importing
    out["error"] = f"import nbgitpuller: {first_line(error)}"
else:
    out["version"] = getattr(nbgitpuller, "__version__", "unknown version")
    points = getattr(nbgitpuller, "_jupyter_server_extension_points", None)
    out["extension"] = callable(points) and any(p.get("module") == "nbgitpuller" for p in points())
    try:
        from jupyter_core.paths import jupyter_config_path
        from jupyter_server.extension.config import ExtensionConfigManager

        manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
        out["enabled"] = bool(manager.get_jpserver_extensions().get("nbgitpuller", False))
    except BaseException as error:
        out["enabled_error"] = f"reading jupyter_server's extension config: {first_line(error)}"
git = shutil.which("git")
if git is None:
    out["git_error"] = "git not found (nbgitpuller runs it)"
else:
    try:
        answer = subprocess.run([git, "--version"], capture_output=True, text=True, timeout=30, check=True)
        out["git"] = answer.stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        out["git_error"] = f"git --version failed: {first_line(error)}"
item(out)
