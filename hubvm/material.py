"""Course material sent with nbgitpuller links: the host side of `hubvm users --link [--csv FILE]`.

A link asks the student's server (nbgitpuller's server extension, in the users' environment with
material.nbgitpuller) to clone the course repository into the student's home at the first visit and, at every later
visit, to merge the teacher's updates keeping the student's own changes; then it opens `material.open` in JupyterLab
or Notebook. The class's link goes through the hub (`/hub/user-redirect/git-pull?...`: each student lands on their
own server, once they have started it); a student's own link names their server (`/user/NAME/git-pull?...`).

The query is the one nbgitpuller's link generator writes (repo, branch, urlpath `lab/tree/<folder>/<open>` or
`tree/<folder>/<open>`), plus `targetpath` when nbgitpuller's default folder would not be the one the link opens: it
keeps a URL's `.git` (https://host/course.git is cloned into course.git, nbgitpuller issue 205) where git clone
strips it. Everything here is pure but `run_links`, which reads the settings and the flags, finds the hub's address as
verify does (hubvm.verify.endpoint), and prints: nothing is imported, nothing runs on the hub.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubvm.config.settings import Settings
from hubvm.config.validators import (
    GIT_BRANCH,
    GIT_URL_FIX,
    REPOSITORY_PATH_FIX,
    git_url_problem,
    repository_folder,
    repository_path_problem,
)
from hubvm.errors import UserError
from hubvm.layout import Layout

APPS = ("jupyterlab", "classic")
# Where each interface shows a path: JupyterLab's file browser or document, Notebook 7's tree (it opens a notebook)
URL_PATH_PREFIX = {"jupyterlab": "lab/tree/", "classic": "tree/"}
DEFAULT_PORTS = {"http": 80, "https": 443}
LINK_FLAGS = ("--repo", "--branch", "--open", "--app", "--hub-url")


@dataclass(frozen=True)
class Material:
    """What a link brings and opens."""

    repo: str              # the course repository's git URL
    branch: str = ""       # "" = the repository's default branch (nbgitpuller asks the server for it)
    open: str = ""         # a path inside the repository; "" = its folder
    app: str = "jupyterlab"

    @property
    def folder(self) -> str:
        """The folder of the student's home the repository is cloned into (as `git clone URL` names it)."""
        return repository_folder(self.repo)


def nbgitpuller_default_folder(repo: str) -> str:
    """The folder nbgitpuller clones into when a link names none: the URL's last part, `.git` kept."""
    return repo.rstrip("/").split("/")[-1]


def material_of(s: Settings, repo: str | None = None, branch: str | None = None, open_path: str | None = None,
                app: str | None = None) -> Material:
    """The material of a link: each flag given (checked as the setting is, one line naming the flag), else the
    setting (material.*, already checked); the interface follows hub.default_app unless material.app or --app."""
    if repo is not None:
        problem = git_url_problem(repo) if repo else "is empty"
        if problem:
            raise UserError(f"--repo {repo!r}: {problem}; {GIT_URL_FIX}")
    if branch and not re.fullmatch(GIT_BRANCH, branch):
        raise UserError(f"--branch {branch!r}: is not a branch name; write one such as main, or \"\" for the "
                        "repository's default")
    if open_path:
        problem = repository_path_problem(open_path)
        if problem:
            raise UserError(f"--open {open_path!r}: {problem}; {REPOSITORY_PATH_FIX}")
    if app is not None and app not in APPS:
        raise UserError(f"--app {app!r}: is not one of the choices; use one of: {', '.join(APPS)}")
    chosen = repo if repo is not None else s.material.repo
    if not chosen:
        raise UserError("no course repository: set material.repo (its git URL), or give --repo URL")
    return Material(repo=chosen,
                    branch=branch if branch is not None else s.material.branch,
                    open=open_path if open_path is not None else s.material.open,
                    app=app or s.material.app or s.hub.default_app)  # hub.default_app's names are APPS


def url_path(material: Material) -> str:
    """Where nbgitpuller sends the student once the pull is done (relative to their server), as the link generator
    writes it: lab/tree/<folder>/<open> (JupyterLab) or tree/<folder>/<open> (Notebook 7)."""
    return f"{URL_PATH_PREFIX[material.app]}{material.folder}/{material.open}"


def query(material: Material) -> str:
    """The link's query: repo, targetpath (only where nbgitpuller's default folder differs), branch, urlpath."""
    fields = [("repo", material.repo)]
    if nbgitpuller_default_folder(material.repo) != material.folder:
        fields.append(("targetpath", material.folder))
    if material.branch:
        fields.append(("branch", material.branch))
    fields.append(("urlpath", url_path(material)))
    return urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)


def class_link(hub: str, material: Material) -> str:
    """One link for the whole class: the hub sends each student to their own server."""
    return f"{hub}/hub/user-redirect/git-pull?{query(material)}"


def student_link(hub: str, name: str, material: Material) -> str:
    """A student's own link, to their server."""
    return f"{hub}/user/{urllib.parse.quote(name, safe='')}/git-pull?{query(material)}"


def links_csv(hub: str, names: Sequence[str], material: Material) -> str:
    """CSV rows user,link (with that header) for the students named."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user", "link"])
    for name in names:
        writer.writerow([name, student_link(hub, name, material)])
    return buffer.getvalue()


def base_url(scheme: str, host: str, port: int | None) -> str:
    """scheme://host[:port], the port left out when it is the scheme's own, an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{shown}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def hub_url_of(endpoint: Any, https: bool) -> str:
    """The hub's address from where verify reaches it (hubvm.verify.endpoint.Endpoint): its HTTPS address when the
    hub has HTTPS (acme: the public name), else its HTTP address."""
    if endpoint.https_address is not None:
        host, port = endpoint.https_address
        return base_url("https", host, port)
    if https:
        why = "not forwarded" if endpoint.reachable else endpoint.source
        raise UserError(f"the hub's HTTPS port is not known from this host ({why}); give --hub-url, the hub's "
                        "address as students reach it")
    parsed = urllib.parse.urlsplit(endpoint.hub_url)
    return base_url("http", parsed.hostname or "", parsed.port)


def checked_hub_url(value: str) -> str:
    """--hub-url: http(s)://host[:port][/prefix], as students reach the hub; returned without a trailing /."""
    parsed = urllib.parse.urlsplit(value)
    fix = "give the hub's address as students reach it, such as https://hub.example.org"
    if re.search(r"[\x00-\x20\x7f]", value) or parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        raise UserError(f"--hub-url {value!r}: is not an http:// or https:// URL with a host; {fix}")
    if parsed.query or parsed.fragment or parsed.username:
        raise UserError(f"--hub-url {value!r}: has a query, fragment or user name; {fix}")
    try:
        parsed.port  # noqa: B018  (a port out of range raises)
    except ValueError:
        raise UserError(f"--hub-url {value!r}: its port is not a number from 1 to 65535; {fix}") from None
    return value.rstrip("/")


def refuse_link_flags(given: Mapping[str, Any]) -> None:
    """The link's flags without --link: one line naming the first."""
    named = [flag for flag in LINK_FLAGS if given.get(flag) is not None]
    if named:
        raise UserError(f"{named[0]} goes with --link (hubvm users --link prints the class's nbgitpuller link)")


def run_links(c: Any, s: Settings, layout: Layout, csv_file: str | None, reset: str | None, repo: str | None,
              branch: str | None, open_path: str | None, app: str | None, hub_url: str | None, host: str | None,
              identity: str | None, output: str | None) -> str:
    """`hubvm users --link [--csv FILE]`: print the class's link, or each student's own link as CSV (user,link),
    or write it to --output; returns what was written. Nothing is imported and nothing runs on the hub."""
    from hubvm.users import read_rows

    if reset is not None:
        raise UserError("--reset does not go with --link; print links with --link [--csv FILE]")
    if not s.material.nbgitpuller:
        raise UserError("material.nbgitpuller is false: the hub has no nbgitpuller to answer a link; set "
                        "material.nbgitpuller true and provision the hub again (hubvm provision)")
    material = material_of(s, repo, branch, open_path, app)
    names = [row.name for row in read_rows(Path(csv_file).expanduser())] if csv_file else None
    if hub_url is not None:
        hub = checked_hub_url(hub_url)
    else:
        from hubvm.shell import is_dry
        from hubvm.verify.endpoint import resolve

        hub = hub_url_of(resolve(c, s, layout, host, identity, dry=is_dry(c)), s.hub.https != "off")
    text = links_csv(hub, names, material) if names is not None else class_link(hub, material) + "\n"
    if output:
        path = Path(output).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        what = f"{len(names)} students' links" if names is not None else "the class's link"
        print(f"users: {what} to {material.repo} written to {path}")
    else:
        print(text, end="")
    return text
