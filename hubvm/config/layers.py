"""The configuration layers, read by the tool itself before anything is merged.

Lowest to highest: invoke.yaml (every default), /etc/invoke.yaml, ~/.invoke.yaml, INVOKE_* variables,
`-f FILE`, then the task's flags. Each file is read strictly, with a one-line UserError for a file that is missing
(-f only), unreadable, a folder, not YAML or JSON, not a mapping, or that repeats a key; an empty file or an empty
section is an empty override. Each layer is checked on its own against the schema (known keys, the kind of each
value) before anything is merged, so a mistake is reported with the layer it is in, and the merged result holds
only values of the right kind; `hubvm.settings` then validates the values themselves.

/etc/invoke.yaml and ~/.invoke.yaml are shared by every invoke program on the machine: a top-level section there
that is neither this tool's nor close to one of its names belongs to another program and is left alone. In a -f
file every section must be this tool's or invoke's own.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubvm import PROJECT_DIR
from hubvm.config import schema
from hubvm.errors import ConfigError, UserError

DEFAULTS_FILE = "invoke.yaml"
ENV_SOURCE = "INVOKE_* variables"
SUFFIXES = (".yaml", ".yml", ".json")
# invoke's own configuration sections (and fabric's), which may sit beside ours in any file
INVOKE_SECTIONS = frozenset({
    "run", "runners", "sudo", "tasks", "timeouts", "debug", "local", "inline_ssh_env", "connect_kwargs",
    "forward_agent", "gateway", "load_ssh_configs", "port", "ssh_config_path", "user", "authentication",
})
# INVOKE_* variables that are invoke's own (INVOKE_RUN_ECHO, INVOKE_RUNTIME_CONFIG, ...)
INVOKE_ENV_PREFIXES = (*tuple(f"INVOKE_{name.upper()}" for name in INVOKE_SECTIONS), "INVOKE_RUNTIME_CONFIG")


@dataclass(frozen=True)
class Layer:
    """One layer's settings of this tool: {section: {key: value}}, values of the schema's kinds."""

    source: str                       # how errors name it: a path, "INVOKE_* variables", "task flags"
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Reading one file


@functools.cache
def _yaml_loader() -> type:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: about 20 times faster

    class StrictLoader(base):  # type: ignore[misc, valid-type]
        """PyYAML's safe loader, but a repeated key is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        loader.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice (line {seen[key]} and line {mark.line + 1})", mark)
            seen[key] = key_node.start_mark.line + 1
        return base.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result


def read_file(path: Path, shown: str | None = None) -> dict[str, Any]:
    """A settings file as a mapping; every problem with the file itself is one UserError line."""
    import yaml

    name = shown or str(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"{name}: a configuration file must end in .yaml, .yml or .json; rename it")
    if path.is_dir():
        raise UserError(f"{name}: is a folder, not a configuration file; give a .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: no such file; check the path") from None
    except PermissionError:
        raise UserError(f"{name}: cannot be read (permission denied); check its permissions") from None
    except UnicodeDecodeError:
        raise UserError(f"{name}: is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise UserError(f"{name}: cannot be read ({error.strerror}); check the path") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_json_pairs) if text.strip() else None
        else:
            data = yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as error:
        raise UserError(yaml_error_line(name, error)) from None
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        where = f" at line {error.lineno}, column {error.colno}" if hasattr(error, "lineno") else ""
        problem = getattr(error, "msg", None) or str(error)
        raise UserError(f"{name}: malformed JSON{where}: {problem}; fix the file's syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{name}: holds {_described(data)}, not a mapping of settings; write sections such as "
                        "'vm:' with keys below them (see invoke.yaml)")
    for section in data:
        if not isinstance(section, str):
            raise UserError(f"{name}: the section name {section!r} is not text; write names such as vm")
    return data


def yaml_error_line(name: str, error: Exception) -> str:
    """One line for a YAML error: the file, the position, the problem, the fix."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{name}: malformed YAML{where}: {problem}; fix the file's syntax"


def _described(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"a single value ({str(value)[:40]!r})"


def find_layer_file(prefix: str) -> Path | None:
    """The file invoke reads for a prefix (/etc/invoke, ~/.invoke): the first of .yaml, .yml, .json, .py."""
    for suffix in (*SUFFIXES, ".py"):
        path = Path(os.path.expanduser(prefix + suffix))
        if path.exists() or path.is_symlink():
            return path
    return None


# ---------------------------------------------------------------------------------------------------------------
# One layer against the schema


def _nearest_section(name: str, cutoff: float = 0.6) -> str | None:
    """The section of ours a name is close to (in a shared file, a name this close is taken for a typo)."""
    return schema.suggest(name, list(schema.SECTIONS), cutoff=cutoff)


def file_layer(data: Mapping[str, Any], source: str, shared: bool) -> Layer:
    """This tool's part of a file's data, each value checked for its kind. `shared`: /etc or ~ (see module doc)."""
    values: dict[str, dict[str, Any]] = {}
    for section, body in data.items():
        if section not in schema.SECTIONS:
            if section in INVOKE_SECTIONS:
                if body is not None and not isinstance(body, Mapping):
                    raise UserError(f"{source}: {section} is invoke's own section and must hold keys, not "
                                    f"{_described(body)}; see invoke's documentation")
                continue
            if shared and _nearest_section(section) is None:
                continue  # another program's section
            near = _nearest_section(section, cutoff=0.5)
            fix = f"did you mean {near}?" if near else f"the sections are {', '.join(schema.SECTIONS)}"
            raise ConfigError(section, body, f"unknown setting (in {source})", fix)
        if body is None:
            continue  # an empty section: an empty override
        if not isinstance(body, Mapping):
            raise ConfigError(section, body, f"is a section, not a value (in {source})",
                              f"set keys under it, such as {section}: {{{schema.section_keys(section)[0]}: ...}}")
        values[section] = {name: _value(section, name, value, source) for name, value in body.items()}
    return Layer(source, values)


def _value(section: str, name: Any, value: Any, source: str) -> Any:
    key = f"{section}.{name}"
    setting = schema.BY_KEY.get(key)
    if setting is None:
        near = schema.suggest(key, [f"{section}.{k}" for k in schema.section_keys(section)])
        raise ConfigError(key, value, f"unknown setting (in {source})",
                          f"did you mean {near}?" if near else f"the keys of {section} are in {DEFAULTS_FILE}")
    if value is None:
        raise ConfigError(key, value, f"is empty (in {source})", f"give {setting.kind.wanted}, or remove the key")
    if not setting.kind.accepts(value):
        hint = " (unquoted yes/no/on/off are true/false in YAML: quote text)" if isinstance(value, bool) else ""
        raise ConfigError(key, value, f"is not {setting.kind.wanted} (in {source}){hint}", _kind_fix(setting))
    return setting.kind.coerce(value)


def _kind_fix(setting: schema.Setting) -> str:
    fixes = {"text": "write a single value (quote it if YAML reads it as something else)",
             "integer": "write a whole number", "number": "write a number such as 2 or 0.5",
             "boolean": "write true or false, unquoted", "list": "write a YAML list such as [a, b]",
             "mapping": "write a YAML mapping such as {key: value}"}
    specific = schema.fix_of(setting)
    if not specific or setting.kind.name in ("list", "mapping"):
        return fixes[setting.kind.name]
    if setting.kind.name in ("integer", "number"):  # the setting's own fix names the numbers it takes
        return specific
    return f"{fixes[setting.kind.name]}: {specific}"


def env_layer(environ: Mapping[str, str]) -> Layer:
    """INVOKE_<SECTION>_<KEY> variables of this tool, parsed by kind; an unknown one close to ours is an error."""
    values: dict[str, dict[str, Any]] = {}
    by_var = {s.env_var: s for s in schema.SETTINGS}
    for name in sorted(environ):
        if not name.startswith("INVOKE_") or name.startswith(INVOKE_ENV_PREFIXES):
            continue
        setting = by_var.get(name)
        if setting is None:
            rest = name[len("INVOKE_"):].lower()
            ours = next((sec for sec in schema.SECTIONS if rest.startswith(sec + "_")), None)
            if ours is None and _nearest_section(rest.split("_")[0]) is None:
                continue  # another program's variable
            near = schema.suggest(name, list(by_var))
            raise ConfigError(name, environ[name], "is not a variable of this tool",
                              f"did you mean {near}?" if near else "see invoke.yaml for the settings")
        try:
            value = setting.kind.from_env(environ[name])
        except ValueError as error:
            raise ConfigError(setting.key, environ[name], f"{error} (from {name})", _kind_fix(setting)) from None
        values.setdefault(setting.section, {})[setting.name] = value
    return Layer(ENV_SOURCE, values)


def flag_layer(flags: Mapping[str, Any]) -> Layer:
    """Task flags that are settings ({"vm.ip": "dhcp"}); a flag left unset (None) overrides nothing."""
    values: dict[str, dict[str, Any]] = {}
    for key, value in flags.items():
        if value is None:
            continue
        setting = schema.BY_KEY[key]
        if not setting.kind.accepts(value):
            raise ConfigError(key, value, f"is not {setting.kind.wanted} (a task flag)", _kind_fix(setting))
        values.setdefault(setting.section, {})[setting.name] = setting.kind.coerce(value)
    return Layer("task flags", values)


# ---------------------------------------------------------------------------------------------------------------
# All layers of a run


@dataclass(frozen=True)
class Layers:
    """The layers of one run, lowest first (without the task's flags, which each task adds)."""

    layers: tuple[Layer, ...]
    project_dir: Path = PROJECT_DIR

    @classmethod
    def read(cls, project_dir: Path = PROJECT_DIR, system_prefix: str | None = "/etc/invoke",
             user_prefix: str | None = "~/.invoke", runtime_file: str | None = None,
             environ: Mapping[str, str] | None = None) -> Layers:
        layers = [defaults_layer(project_dir)]
        for prefix, shown in ((system_prefix, None), (user_prefix, None)):
            path = find_layer_file(prefix) if prefix else None
            if path is not None and path.suffix != ".py":  # a .py file is invoke's own business
                layers.append(file_layer(read_file(path, shown), str(path), shared=True))
        layers.append(env_layer(os.environ if environ is None else environ))
        if runtime_file:
            layers.append(runtime_layer(runtime_file, project_dir))
        return cls(tuple(layers), project_dir)

    @classmethod
    def defaults_only(cls, project_dir: Path = PROJECT_DIR) -> Layers:
        return cls((defaults_layer(project_dir),), project_dir)

    def merged(self, flags: Layer | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The merged values and, per key, the layer its value came from (for error messages)."""
        values: dict[str, dict[str, Any]] = {}
        sources: dict[str, str] = {}
        for layer in (*self.layers, *([flags] if flags else [])):
            for section, body in layer.values.items():
                for name, value in body.items():
                    key = f"{section}.{name}"
                    values.setdefault(section, {})[name] = value
                    sources[key] = schema.BY_KEY[key].env_var if layer.source == ENV_SOURCE else layer.source
        return values, sources


def runtime_layer(runtime_file: str, project_dir: Path) -> Layer:
    path = Path(os.path.expanduser(runtime_file))
    data = read_file(path, runtime_file)
    return file_layer(data, runtime_file, shared=False)


def defaults_layer(project_dir: Path = PROJECT_DIR) -> Layer:
    """invoke.yaml: every setting with its default; a setting missing there is a defect of the project."""
    path = project_dir / DEFAULTS_FILE
    layer = file_layer(read_file(path, DEFAULTS_FILE), DEFAULTS_FILE, shared=False)
    missing = [s.key for s in schema.SETTINGS if s.name not in layer.values.get(s.section, {})]
    if missing:
        raise UserError(f"{DEFAULTS_FILE}: has no default for {', '.join(missing)}; restore it from git")
    return layer


def layer_sources(layers: Iterable[Layer]) -> list[str]:
    return [layer.source for layer in layers]
