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
from invoke.env import Environment
from invoke.util import yaml as invoke_yaml

from hubvm import PROJECT_DIR
from hubvm.errors import ConfigError
from hubvm.settings import Settings, defaults, dotted, merge, parse, unknown_keys, yaml_error_line

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


# The task flags that are settings (-i/--ip, -d/--data, as in build.sh)
FLAG_SETTINGS = {"ip": "vm.ip", "data": "vm.data"}


def flag_overrides(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a task's flags override (a flag left unset overrides nothing)."""
    return {key: flags.get(flag) for flag, key in FLAG_SETTINGS.items()}


def load(config: Config, overrides: Mapping[str, Any] | None = None, project_dir: Path = PROJECT_DIR) -> Settings:
    """Settings for a task: invoke's layers, then the task's flags (an explicit flag wins)."""
    return parse(raw_settings(config, overrides, project_dir), project_dir)


def adapt_invoke() -> None:
    """Two adjustments to invoke's loading, made once from tasks.py (invoke has no hook for either):

    - a malformed `-f FILE` is reported as one line and exit 1, instead of a traceback. invoke reads -f after it
      imported tasks.py, so wrapping its YAML loader here catches that file; it reads /etc/invoke.yaml and
      ~/.invoke.yaml before tasks.py exists, so errors in those stay invoke's own.
    - INVOKE_* values are converted the way a person means them: lists as YAML (`[numpy, pandas]`), booleans
      from true/false/yes/no/1/0, and a value that does not convert is passed on as text for our validation to
      name (invoke itself raises a traceback for lists and bad numbers, and takes "false" as true).
    """
    if getattr(Config._load_yaml, "_hubvm", False):
        return
    original = Config._load_yaml

    def load_yaml(self: Config, path: Any) -> Any:
        try:
            return original(self, path)
        except invoke_yaml.YAMLError as error:
            raise Exit(f"error: {yaml_error_line(path, error)}", 1) from None

    load_yaml._hubvm = True  # type: ignore[attr-defined]
    Config._load_yaml = load_yaml  # type: ignore[method-assign]
    Config._load_yml = load_yaml  # type: ignore[attr-defined]
    Environment._cast = lambda self, old, new: cast_env(old, new)  # type: ignore[method-assign]


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def cast_env(old: Any, new: str) -> Any:
    """An INVOKE_* string converted to the type of the setting it overrides (see adapt_invoke)."""
    if isinstance(old, bool):
        word = new.strip().lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else new
    if isinstance(old, (list, tuple)):
        if not new.strip():
            return []
        try:
            value = invoke_yaml.safe_load(new)
        except invoke_yaml.YAMLError:
            return [new]
        return value if isinstance(value, list) else [new]
    if old is None or isinstance(old, str):
        return new
    try:
        return type(old)(new)
    except (TypeError, ValueError):
        return new
