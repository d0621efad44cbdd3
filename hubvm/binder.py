"""A course's environment in repo2docker's files (packages.binder: the folder of a Binder repository), read the way
repo2docker documents them and checked on this machine before anything runs.

repo2docker looks in `binder/` (or `.binder/`) when the folder has one, and then only there. Of its files:
- requirements.txt: pip requirements into the users' environment, pip's file format (comments, line
  continuations, `--hash` options as pip-compile writes them, global options such as --index-url, and -r / -c of
  other files inside the folder); a line that is no requirement is an error naming file and line; an editable or a
  local path (`-e .`) is refused: hubvm installs packages, not the repository itself;
- apt.txt: Debian packages, one per line (comments allowed); a name apt cannot have is an error here, a name the
  guest's apt does not know is one at the start of the binder role, before it installs anything;
- install.R: an R script, run once (again only when it or packages.cran_repo changes) against packages.cran_repo;
- runtime.txt: `python-X.Y`, `r-X.Y-YYYY-MM-DD` or `r-YYYY-MM-DD`: accepted when the image's own Python or R has
  that version (this tool installs no other), else refused naming the version the image has and the vm.os that
  has the one asked for; an R snapshot date is recorded, not applied (the packages come from packages.cran_repo);
- postBuild: run last, as the users' environment's owner, with that environment first on PATH;
- environment.yml, Project.toml and the other files repo2docker would act on (Pipfile, setup.py, DESCRIPTION,
  Dockerfile, start, ...): refused with one line, rather than ignored: this image has no conda, no Julia.

Order on the guest (the binder role, after hubvm's own packages.*): apt.txt, requirements.txt, install.R, postBuild
- repo2docker's order.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubvm.errors import UserError

KEY = "packages.binder"
KNOWN = ("requirements.txt", "apt.txt", "install.R", "runtime.txt", "postBuild")
# What repo2docker acts on that this image cannot do, and why (one line each)
REFUSED = {
    "environment.yml": "asks for conda, which this image has not (its Python is the system's, with pip)",
    "Project.toml": "asks for Julia, which this image has not",
    "JuliaProject.toml": "asks for Julia, which this image has not",
    "REQUIRE": "asks for Julia, which this image has not",
    "Pipfile": "asks for pipenv, which hubvm does not run",
    "Pipfile.lock": "asks for pipenv, which hubvm does not run",
    "setup.py": "installs the repository itself as a package, which hubvm does not",
    "DESCRIPTION": "installs the repository itself as an R package, which hubvm does not",
    "default.nix": "asks for Nix, which this image has not",
    "Dockerfile": "builds a container image, which this image is not",
    "start": "wraps every user's server in a script, which this hub's spawner does not run",
}
FIXES = {
    "environment.yml": "turn it into requirements.txt (pip) and apt.txt, or remove it",
    "Pipfile": "turn it into requirements.txt, or remove it",
    "Pipfile.lock": "turn it into requirements.txt, or remove it",
}
# The Python (python3) and R (r-base-core) each vm.os has, as X.Y: the only ones a runtime.txt can get (kept here,
# not in templates/packer/os/, whose files go into the box's digest; tests/test_binder.py holds both lists equal)
RUNTIMES = {"debian12": {"python": "3.11", "r": "4.2"}, "ubuntu2404": {"python": "3.12", "r": "4.3"}}
APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
RUNTIME = re.compile(r"(?:(?P<python>python)-(?P<py>[0-9]+\.[0-9]+)(?:\.[0-9]+)?"
                     r"|(?P<r>r)-(?:(?P<rv>[0-9]+\.[0-9]+)(?:\.[0-9]+)?-)?(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}))")
# pip options a requirements file may hold: those that take a value, and flags
PIP_VALUE_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
                               "--no-binary", "--only-binary", "--use-feature"})
PIP_FLAGS = frozenset({"--pre", "--prefer-binary", "--require-hashes", "--no-index"})
PIP_FILE_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})
PER_REQUIREMENT = ("--hash",)


class BinderError(UserError):
    """A file of the folder that hubvm cannot honour: one line naming the file (and line) and the fix."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        super().__init__(f"{KEY}: {where}: {problem}; {fix}")


@dataclass(frozen=True)
class Requirement:
    file: str     # as named inside the folder, e.g. requirements.txt
    line: int
    text: str     # the requirement as written (without its --hash options)
    name: str     # its distribution name


@dataclass(frozen=True)
class Runtime:
    text: str
    language: str           # "python" or "r"
    version: str            # "3.11", "4.2", or "" (R of a date)
    date: str = ""          # an R snapshot date, recorded only


@dataclass(frozen=True)
class Binder:
    root: Path                        # the repository's folder (packages.binder)
    folder: Path                      # where the files were read (root, or its binder/ or .binder/)
    files: tuple[str, ...]            # the known files found, in KNOWN's order
    requirements: tuple[Requirement, ...] = ()
    apt: tuple[tuple[int, str], ...] = ()   # (line, package)
    runtime: Runtime | None = None
    digests: Mapping[str, str] = field(default_factory=dict)   # file -> sha256 of its content
    postbuild_interpreter: tuple[str, ...] = ("/bin/sh",)     # from postBuild's #! line

    def has(self, name: str) -> bool:
        return name in self.files

    @property
    def config_prefix(self) -> str:
        """Where the files are inside the repository: "" or "binder/" or ".binder/"."""
        return "" if self.folder == self.root else f"{self.folder.name}/"

    def record(self) -> dict[str, Any]:
        """What manifest.json says the folder asked for."""
        out: dict[str, Any] = {"folder": self.root.name, "files": [self.config_prefix + name for name in self.files]}
        if self.requirements:
            out["requirements.txt"] = [r.text for r in self.requirements]
        if self.apt:
            out["apt.txt"] = [name for _, name in self.apt]
        for name in ("install.R", "postBuild"):
            if self.has(name):
                out[name] = {"sha256": self.digests[name]}
        if self.runtime:
            out["runtime.txt"] = {"asks": self.runtime.text, **({"snapshot_date": self.runtime.date,
                                  "snapshot_applied": False} if self.runtime.date else {})}
        return out


def config_folder(path: Path) -> Path:
    """Where repo2docker reads the configuration: binder/ or .binder/ when the folder has one."""
    for sub in ("binder", ".binder"):
        if (path / sub).is_dir():
            return path / sub
    return path


def of(s: Any) -> Binder | None:
    """The settings' packages.binder folder, read and checked (None when the setting is empty)."""
    return read_folder(s.packages.binder, s.vm.os) if s.packages.binder else None


def read_folder(path: Path, os_key: str) -> Binder:
    """The folder's repo2docker files, checked against the image of vm.os `os_key`: a BinderError (one line) for
    the first problem."""
    folder = config_folder(path)
    for name, problem in REFUSED.items():
        if (folder / name).is_file():
            raise BinderError(_shown(folder, name), problem, FIXES.get(name, "remove it from the folder"))
    files = tuple(name for name in KNOWN if (folder / name).is_file())
    if not files:
        raise BinderError(str(folder), f"holds none of repo2docker's files ({', '.join(KNOWN)})",
                          "point packages.binder at the repository's folder, or set it to \"\"")
    texts = {name: _text(folder, name) for name in files}
    requirements = tuple(_requirements(folder, "requirements.txt", set())) if "requirements.txt" in files else ()
    apt = tuple(_apt(texts["apt.txt"], _shown(folder, "apt.txt"))) if "apt.txt" in files else ()
    runtime = _runtime(texts["runtime.txt"], _shown(folder, "runtime.txt"), os_key) \
        if "runtime.txt" in files else None
    digests = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}
    interpreter = _interpreter(texts["postBuild"], _shown(folder, "postBuild")) if "postBuild" in files \
        else ("/bin/sh",)
    return Binder(path, folder, files, requirements, apt, runtime, digests, interpreter)


def _interpreter(text: str, where: str) -> tuple[str, ...]:
    """What runs postBuild: the program (and one argument) of its #! line, as the kernel would, else /bin/sh."""
    first = text.splitlines()[0] if text else ""
    if not first.startswith("#!"):
        return ("/bin/sh",)
    words = first[2:].strip().split(maxsplit=1)
    if not words or not words[0].startswith("/"):
        raise BinderError(f"{where} line 1", f"{first!r} names no program by its full path",
                          "write #!/bin/bash or #!/usr/bin/env python3")
    return tuple(words)


def _shown(folder: Path, name: str) -> str:
    return str(folder / name)


def _text(folder: Path, name: str) -> str:
    try:
        return (folder / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BinderError(_shown(folder, name), "is not UTF-8 text", "save it as UTF-8") from None
    except OSError as error:
        raise BinderError(_shown(folder, name), f"cannot be read ({error.strerror})", "make it readable") from None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """pip's view of a requirements file: comments (at the start, or after whitespace) removed, lines ending in a
    backslash joined to the next; (number of the first physical line, text) for each non-empty line."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s+)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            out.append((start, joined))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _requirements(folder: Path, name: str, seen: set[str]) -> list[Requirement]:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Parsed

    seen.add(name)
    where = _shown(folder, name)
    found: list[Requirement] = []
    for number, line in logical_lines(_text(folder, name)):
        at = f"{where} line {number}"
        tokens = line.split()
        cut = next((i for i, token in enumerate(tokens) if token.startswith("-")), len(tokens))
        if cut == 0:   # an option line: pip reads it with shell quoting
            try:
                words = shlex.split(line)
            except ValueError as error:
                raise BinderError(at, f"cannot be read ({error})", "fix its quoting") from None
        else:          # a requirement, then its options (pip splits at the first word starting with -)
            words = [" ".join(tokens[:cut]), *tokens[cut:]]
        head = words[0]
        option, _, inline = head.partition("=") if head.startswith("--") else (head, "", "")
        if option in ("-e", "--editable") or head.startswith((".", "/", "file:")):
            raise BinderError(at, f"{line!r} installs a local folder or the repository itself, which hubvm does "
                              "not", "list the packages it needs by name")
        if option in PIP_FILE_OPTIONS:
            target = inline or (words[1] if len(words) > 1 else "")
            if not target or not (folder / target).resolve().is_relative_to(folder.resolve()):
                raise BinderError(at, f"{line!r} names no file inside the folder", "name a file beside it")
            if not (folder / target).is_file():
                raise BinderError(at, f"{line!r}: no such file in the folder", "add the file, or remove the line")
            if option in ("-r", "--requirement") and target not in seen:
                found += _requirements(folder, target, seen)
            continue
        if option in PIP_VALUE_OPTIONS:
            if not inline and len(words) < 2:
                raise BinderError(at, f"{option} has no value", "give its value, or remove the line")
            continue
        if option in PIP_FLAGS:
            continue
        if head.startswith("-"):
            raise BinderError(at, f"pip option {head} is not one hubvm passes on", "remove it, or list packages "
                              "only")
        text = " ".join(w for w in words if not w.startswith(PER_REQUIREMENT))
        extra = [w for w in words[1:] if w.startswith("-") and not w.startswith(PER_REQUIREMENT)]
        if extra:
            raise BinderError(at, f"option {extra[0]} after a requirement is not one hubvm passes on",
                              "keep only --hash options there")
        try:
            parsed = Parsed(text)
        except InvalidRequirement as error:
            problem = str(error).splitlines()[0][:120]
            raise BinderError(at, f"{text!r} is not a pip requirement ({problem})",
                              "write a name with an optional version, such as pandas==2.2.2") from None
        found.append(Requirement(name, number, text, parsed.name))
    return found


def _apt(text: str, where: str) -> list[tuple[int, str]]:
    packages = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not APT_NAME.fullmatch(line):
            raise BinderError(f"{where} line {number}", f"{line!r} is not a Debian package name",
                              "write one package name per line, such as libxml2-dev")
        packages.append((number, line))
    return packages


def _runtime(text: str, where: str, os_key: str) -> Runtime:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    match = RUNTIME.fullmatch(lines[0]) if len(lines) == 1 else None
    if match is None:
        raise BinderError(where, f"{' '.join(lines)[:60]!r} is not one of repo2docker's forms",
                          "write python-3.11, r-4.2-2023-01-01 or r-2023-01-01")
    language = "python" if match["python"] else "r"
    version = match["py"] if language == "python" else (match["rv"] or "")
    has = RUNTIMES[os_key][language]
    label = "Python" if language == "python" else "R"
    if version and version != has:
        others = sorted(name for name, versions in RUNTIMES.items() if versions[language] == version)
        fix = (f"set vm.os {others[0]} ({label} {version}), or " if others else "") + \
            f"change runtime.txt to {language}-{has}{'-' + match['date'] if match['date'] else ''}, or remove it"
        raise BinderError(where, f"asks for {label} {version}, and the image of vm.os {os_key} has {label} {has}",
                          fix)
    return Runtime(lines[0], language, version, match["date"] or "")

