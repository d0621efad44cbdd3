"""The `hubvm` command: invoke's own Program running this project's tasks.py, with the configuration read the way
this tool needs (invoke documents both: "Reusing Invoke's CLI module as a distinct binary", and Config subclasses;
fabric's `fab` is built the same way).

Why not the plain `invoke` binary: invoke reads /etc/invoke.yaml and ~/.invoke.yaml before it loads any project
code, and -f FILE right after, so a malformed file there ends in a traceback no task can catch; it ranks the
project's invoke.yaml (our defaults) above those personal files; and it casts INVOKE_* values to the type of the
default (INVOKE_HUB_CPU_LIMIT=0.5 fails against the default 2). `HubConfig` overrides invoke's public loading
methods so that each file is first read strictly by hubvm.config.layers (one line per problem, before invoke merges
anything), keeps the tool's layers for hubvm.config.settings (invoke.yaml is never invoke's project file here, so
/etc, ~, INVOKE_* and -f all rank above it), and lets invoke's own loader see only its own INVOKE_* variables.

`Executor` (also invoke's public extension point) checks a whole run before its first task: every given task's
settings with that task's own flags (invoke calls pre-tasks without the flags of the task that asked for them,
so `up -i BAD` would otherwise build the box first), and, for a run that boots the VM, every tool it needs.

`invoke` in this folder still works: tasks.py is an ordinary invoke task file; its Executor hands the run to
`hubvm` (same arguments), so both behave the same once invoke itself has read its files.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import invoke
from invoke import Collection, Config, Exit, ParseError, Program

from hubvm import PROJECT_DIR, __version__
from hubvm.config.layers import Layer, Layers, defaults_layer, env_layer, file_layer, find_layer_file, read_file
from hubvm.errors import UserError

# Task flags that are settings (-i/--ip, -d/--data, as in build.sh)
FLAG_SETTINGS = {"ip": "vm.ip", "data": "vm.data"}


def flag_settings(flags: Mapping[str, Any]) -> dict[str, Any]:
    """{"vm.ip": ..., "vm.data": ...} from a task's keyword arguments (an unset flag is None: no override)."""
    return {key: flags.get(flag) for flag, key in FLAG_SETTINGS.items()}


def _exit(error: UserError) -> Exit:
    return Exit(f"error: {error}", 1)


class HubConfig(Config):
    """invoke's Config, with this tool's layers read strictly and kept apart (see module doc)."""

    prefix = "invoke"
    # Real attributes (not configuration keys): invoke's DataProxy treats class attributes as attributes
    hubvm_project_dir: Path = PROJECT_DIR
    hubvm_prefixes: tuple[str, str] = ("/etc/", "~/.")
    hubvm_system: Layer | None = None
    hubvm_user: Layer | None = None
    hubvm_env: Layer | None = None
    hubvm_runtime: Layer | None = None
    hubvm_runtime_path: str | None = None
    hubvm_probes: Any = None  # the tool probes of this run (hubvm.shell.probes)
    hubvm_run_flags: Mapping[str, Any] = {}  # settings given as flags to any task of the run (see Executor)

    def __init__(self, *args: Any, system_prefix: str | None = None, user_prefix: str | None = None,
                 **kwargs: Any) -> None:
        self.hubvm_prefixes = (system_prefix or "/etc/", user_prefix or "~/.")
        super().__init__(*args, system_prefix=system_prefix, user_prefix=user_prefix, **kwargs)

    def _our_file(self, prefix: str) -> Layer | None:
        path = find_layer_file(prefix + self.prefix)
        if path is None or path.suffix == ".py":  # a .py file is invoke's own business
            return None
        try:
            return file_layer(read_file(path), str(path), shared=True)
        except UserError as error:
            raise _exit(error) from None

    def load_system(self, merge: bool = True) -> None:
        self.hubvm_system = self._our_file(self.hubvm_prefixes[0])
        super().load_system(merge)

    def load_user(self, merge: bool = True) -> None:
        self.hubvm_user = self._our_file(self.hubvm_prefixes[1])
        super().load_user(merge)

    def set_runtime_path(self, path: str | None) -> None:
        self.hubvm_runtime_path = path
        super().set_runtime_path(path)

    def load_runtime(self, merge: bool = True) -> None:
        if self.hubvm_runtime_path:
            try:
                # a missing -f file is an error here (invoke alone ignores it)
                self.hubvm_runtime = file_layer(read_file(Path(os.path.expanduser(self.hubvm_runtime_path)),
                                                          self.hubvm_runtime_path),
                                                self.hubvm_runtime_path, shared=False)
            except UserError as error:
                raise _exit(error) from None
        super().load_runtime(merge)

    def load_shell_env(self) -> None:
        if self.hubvm_env is None:
            try:
                self.hubvm_env = env_layer(os.environ)
            except UserError as error:
                raise _exit(error) from None
        with _hidden(_tool_variables(self.hubvm_env)):
            super().load_shell_env()

    def clone(self, into: type | None = None) -> Any:
        new = super().clone(into)
        if isinstance(new, HubConfig):
            for name in ("hubvm_project_dir", "hubvm_prefixes", "hubvm_system", "hubvm_user", "hubvm_env",
                         "hubvm_runtime", "hubvm_runtime_path", "hubvm_probes", "hubvm_run_flags"):
                setattr(new, name, getattr(self, name))
        return new

    @property
    def hubvm_layers(self) -> Layers:
        """The tool's layers, lowest first: invoke.yaml, /etc, ~, INVOKE_*, -f (task flags come per task)."""
        if self.hubvm_env is None:
            self.load_shell_env()
        try:
            defaults = defaults_layer(self.hubvm_project_dir)
        except UserError as error:
            raise _exit(error) from None
        found = [self.hubvm_system, self.hubvm_user, self.hubvm_env, self.hubvm_runtime]
        return Layers((defaults, *(layer for layer in found if layer is not None)), self.hubvm_project_dir)


def _tool_variables(env: Layer) -> list[str]:
    from hubvm.config import schema

    return [schema.BY_KEY[f"{section}.{name}"].env_var for section, body in env.values.items() for name in body]


@contextlib.contextmanager
def _hidden(names: list[str]) -> Iterator[None]:
    """os.environ without these variables for the duration (invoke's loader would cast them by its own rules)."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def task_flags(config: Any, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a task's flags give, over those given to the other tasks of the run: invoke calls a pre-task
    (pack, before up) without the flags of the task that asked for it, yet `up -i X` means X for the whole run."""
    own = flag_settings(flags)
    run = config.hubvm_run_flags if isinstance(config, HubConfig) else {}
    return {key: own[key] if own[key] is not None else run.get(key) for key in own}


def layers_of(config: Any) -> Layers:
    """The run's layers from a task's config: HubConfig's, or invoke.yaml alone (a bare Config in unit tests)."""
    if isinstance(config, HubConfig):
        return config.hubvm_layers
    return Layers.defaults_only()


class Executor(invoke.Executor):
    def execute(self, *tasks: Any) -> dict[Any, Any]:
        if not isinstance(self.config, HubConfig):
            _hand_over_to_hubvm()
        self._check(self.normalize(tasks))
        return super().execute(*tasks)

    def _check(self, direct: list[invoke.Call]) -> None:
        from hubvm.config import settings
        from hubvm.host import probes, tools

        try:
            layers = self.config.hubvm_layers
            given = [flag_settings(call.kwargs) for call in direct]
            self.config.hubvm_run_flags = {k: v for flags in given for k, v in flags.items() if v is not None}
            checked = [settings.load(layers, task_flags(self.config, call.kwargs)) for call in direct]
            names = [call.task.name for call in self.expand_calls(list(direct))]
            if checked:
                s = checked[-1]
                found = probes.probes_of(invoke.Context(config=self.config))
                probes.require(found, s, tools.needs_of_run(names, s), bool(self.config.run.dry))
        except UserError as error:
            sys.stdout.flush()
            raise _exit(error) from None


def _hand_over_to_hubvm() -> None:
    """Run by the plain `invoke` binary: continue as `hubvm` with the same arguments (see module doc)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "hubvm", *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------------------------
# The program


class HubProgram(Program):
    """invoke's Program with this project's tasks, and parser errors said in one plain line."""

    def __init__(self, project_dir: Path, system_prefix: str | None = None, **kwargs: Any) -> None:
        self.project_dir = project_dir
        self.system_prefix = system_prefix  # /etc/ unless a test points it elsewhere
        super().__init__(**kwargs)

    def create_config(self) -> None:
        self.config = self.config_class(system_prefix=self.system_prefix)
        self.config.hubvm_project_dir = self.project_dir

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as error:
            raise ParseError(plain_parse_error(str(error), None, self.binary)) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as error:
            context = getattr(error, "context", None)
            raise ParseError(plain_parse_error(str(error), getattr(context, "name", None), self.binary)) from None

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as error:
            raise ParseError(plain_parse_error(str(error), None, self.binary)) from None


def plain_parse_error(message: str, task: str | None, binary: str = "hubvm") -> str:
    """invoke's parser message as one line: what the word was taken for, and how to list tasks or flags."""
    unknown = re.fullmatch(r"No idea what '(.*)' is!", message)
    if unknown:
        word = unknown.group(1)
        if task and word.startswith("-"):
            return f"error: {word} is not a flag of {task}; {binary} --help {task} lists its flags"
        if word.startswith("-"):
            return f"error: {word} is not an option of {binary}; {binary} --help lists the options"
        after = f" (after {task}, which takes no such argument)" if task else ""
        return f"error: {word!r} is not a task{after}; {binary} --list lists the tasks"
    value = re.fullmatch(r"Flag <Argument: ([\w-]+)(?: \(.*?\))?.*> needed value and was not given one!", message)
    if value:
        names = re.findall(r"[\w-]+", value.group(1))
        flag = f"--{names[0].replace('_', '-')}" if names else "a flag"
        where = f" ({binary} --help {task})" if task else ""
        return f"error: {flag} needs a value{where}"
    positional = re.fullmatch(r"'([\w-]+)' did not receive required positional arguments: (.*)", message)
    if positional:
        names = " ".join(name.upper() for name in re.findall(r"'([\w-]+)'", positional.group(2)))
        return f"error: {positional.group(1)} needs {names}: {binary} {positional.group(1)} {names} " \
               f"({binary} --help {positional.group(1)})"
    no_value = re.fullmatch(r"Flag <Argument: ([\w-]+).*> doesn't take any value!", message)
    if no_value:
        return f"error: --{no_value.group(1).replace('_', '-')} takes no value; write it alone"
    return f"error: {message.splitlines()[0] if message else 'the command line could not be read'}; " \
           f"{binary} --list lists the tasks"


def find_project(start: Path) -> Path:
    """The project a command works on: the nearest folder at or above `start` with tasks.py and invoke.yaml (as
    invoke finds tasks.py), else the one this package belongs to."""
    for folder in (start, *start.parents):
        if (folder / "tasks.py").is_file() and (folder / "invoke.yaml").is_file():
            return folder
    return PROJECT_DIR


def namespace(project_dir: Path) -> Collection:
    """The tasks of the project's tasks.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks", project_dir / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tasks", module)
    spec.loader.exec_module(module)
    return Collection.from_module(module)


def program(project_dir: Path | None = None, system_prefix: str | None = None) -> HubProgram:
    project = project_dir or find_project(Path.cwd())
    return HubProgram(project, system_prefix, name="hubvm", binary="hubvm", version=__version__,
                      namespace=namespace(project),
                      config_class=HubConfig, executor_class=Executor)


def main() -> None:
    program().run()
