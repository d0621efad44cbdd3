"""The bridge from invoke's configuration layers to `hubvm.settings`.

invoke ranks the project file (invoke.yaml beside tasks.py) above /etc/invoke.yaml and ~/.invoke.yaml. Our
invoke.yaml holds the defaults, so a per-machine file must win over it: this module merges the layers itself,
lowest to highest: invoke.yaml, /etc/invoke.yaml, ~/.invoke.yaml, INVOKE_* variables, `invoke -f FILE`, then
the task's own flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invoke import Config, Exit
from invoke.util import yaml as invoke_yaml

from hubvm import PROJECT_DIR
from hubvm.errors import ConfigError
from hubvm.settings import Settings, defaults, dotted, merge, parse, unknown_keys

# Top-level keys that belong to invoke and fabric, not to us.
try:
    from fabric import Config as FabricConfig

    FOREIGN_KEYS = frozenset(Config.global_defaults()) | frozenset(FabricConfig.global_defaults())
except ImportError:  # fabric is a dependency; this keeps settings usable where only invoke is installed
    FOREIGN_KEYS = frozenset(Config.global_defaults())


def _layers(config: Config) -> list[tuple[str, Mapping[str, Any]]]:
    """invoke's override layers above the project file, each named for error messages."""
    runtime = getattr(config, "_runtime_path", None) or "invoke -f FILE"
    return [
        (getattr(config, "_system_path", None) or "/etc/invoke.yaml", config._system),
        (getattr(config, "_user_path", None) or "~/.invoke.yaml", config._user),
        ("INVOKE_* environment variables", config._env),
        (str(runtime), config._runtime),
        ("task flags", config._overrides),
    ]


def raw_settings(config: Config, overrides: Mapping[str, Any] | None = None,
                 project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The merged configuration of our sections; an unknown key in any layer is a ConfigError naming the layer."""
    base = defaults(project_dir)
    ours: list[Mapping[str, Any]] = []
    for source, layer in _layers(config):
        layer = {k: v for k, v in layer.items() if k not in FOREIGN_KEYS}
        try:
            unknown_keys(layer, base, frozenset())
        except ConfigError as error:
            raise ConfigError(error.key, error.value, f"{error.problem} (in {source})", error.fix) from None
        ours.append(layer)
    return merge(base, *ours, dotted(overrides or {}))


def load(config: Config, overrides: Mapping[str, Any] | None = None, project_dir: Path = PROJECT_DIR) -> Settings:
    """Settings for a task: invoke's layers, then the task's flags (an explicit flag wins)."""
    return parse(raw_settings(config, overrides, project_dir), project_dir)


def report_malformed_yaml() -> None:
    """Make invoke report a malformed `-f FILE` as one line and exit 1, instead of a traceback.

    invoke reads -f after it imported tasks.py, so wrapping its YAML loader here catches that file; it reads
    /etc/invoke.yaml and ~/.invoke.yaml before tasks.py exists, so errors in those stay invoke's own.
    """
    if getattr(Config._load_yaml, "_hubvm", False):
        return
    original = Config._load_yaml

    def load_yaml(self: Config, path: Any) -> Any:
        try:
            return original(self, path)
        except invoke_yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise Exit(f"{path}: malformed YAML{where}: {problem}; fix the file's syntax", 1) from None

    load_yaml._hubvm = True  # type: ignore[attr-defined]
    Config._load_yaml = load_yaml  # type: ignore[method-assign]
    Config._load_yml = load_yaml  # type: ignore[attr-defined]
