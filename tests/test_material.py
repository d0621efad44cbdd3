"""hubvm.material without a hub: the nbgitpuller links (their query read back as nbgitpuller reads it), the folder a
repository is cloned into, the hub's address as students reach it, the flags' one-line errors, and `hubvm users
--link` through the program (nothing imported, nothing connected)."""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from pathlib import Path

import pytest
from invoke import Config, MockContext

from hubvm import material
from hubvm.config import settings
from hubvm.config.validators import git_url_problem, repository_folder, repository_path_problem
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.material import Material
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.target import Target
from tests.conftest import REPO, run_in_process, settings_with

COURSE = "https://git.example.org/teaching/course"


def parse(**overrides: object) -> settings.Settings:
    return settings_with(REPO, **overrides)


def read_back(link: str) -> tuple[str, dict[str, str]]:
    """(path, query) of a link, the query decoded as tornado's get_argument decodes it (what nbgitpuller reads)."""
    parsed = urllib.parse.urlsplit(link)
    fields = urllib.parse.parse_qs(parsed.query, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in fields.values()), fields
    return parsed.path, {name: values[0] for name, values in fields.items()}


# ---------------------------------------------------------------------------------------------------------------
# The repository's URL and folder


@pytest.mark.parametrize(("url", "folder"), [
    ("https://github.com/org/course", "course"), ("https://github.com/org/course.git", "course"),
    ("https://github.com/org/course/", "course"), ("git@github.com:org/course.git", "course"),
    ("git@host:course", "course"), ("host:course.git/", "course"), ("ssh://git@host:2222/x/week.git", "week"),
    ("http://127.0.0.1:9480/cgi-bin/git/course.git", "course"), ("http://[::1]:80/a.git/", "a"),
    ("https://host/", ""), ("https://host", ""), ("https://host/..", ""),
])
def test_repository_folder_is_what_git_clone_makes(url: str, folder: str) -> None:
    assert repository_folder(url) == folder


@pytest.mark.parametrize("url", [
    "https://github.com/org/course.git", "http://10.0.0.5:8080/git/course", "ssh://git@host:2222/x/y.git",
    "git@github.com:org/course.git", "gitlab.example.org:group/sub/course", "https://user@host/course",
    "http://[fd00::5]:3000/c.git",
])
def test_good_git_urls(url: str) -> None:
    assert git_url_problem(url) is None


@pytest.mark.parametrize(("url", "words"), [
    ("https://host/course x", "holds a space"), ("https://host/\tcourse", "control character"),
    ("https://host/'course'", "holds \"'\""), ("ftp://host/course", "it is ftp://"),
    ("file:///srv/course.git", "it is file://"), ("/srv/git/course.git", "not an https://"),
    ("course", "not an https://"), ("https://host/", "names no repository"),
    ("https://teacher:s3cret@host/course", "holds a password"), ("https://host/course?x=1", "query or fragment"),
    ("https://ho_st/course", "no valid host"), ("https://host:99999/course", "no valid host"),
])
def test_bad_git_urls_say_why(url: str, words: str) -> None:
    problem = git_url_problem(url)
    assert problem is not None and words in problem


@pytest.mark.parametrize(("path", "problem"), [
    ("week1/intro.ipynb", None), ("week 1/", None), ("README.md", None), ("/etc/passwd", "starts with /"),
    ("../other", ". or .. part"), ("week1//a", ". or .. part"), ("a\\b", "backslash"), ("a\nb", "control"),
])
def test_paths_inside_the_repository(path: str, problem: str | None) -> None:
    found = repository_path_problem(path)
    assert (found is None) if problem is None else (found is not None and problem in found)


# ---------------------------------------------------------------------------------------------------------------
# Links


def test_the_class_link_is_what_nbgitpullers_generator_writes() -> None:
    m = Material(COURSE, "main", "", "jupyterlab")
    link = material.class_link("https://hub.example.org", m)
    assert link == ("https://hub.example.org/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgit.example.org%2Fteaching"
                    "%2Fcourse&branch=main&urlpath=lab%2Ftree%2Fcourse%2F")
    path, fields = read_back(link)
    assert path == "/hub/user-redirect/git-pull"
    assert fields == {"repo": COURSE, "branch": "main", "urlpath": "lab/tree/course/"}  # no targetpath needed


def test_a_dot_git_url_names_the_folder_git_would_make() -> None:
    """nbgitpuller keeps .git in the folder it clones into (its issue 205): the link says targetpath, so the clone
    and the page the link opens agree."""
    for url in (COURSE + ".git", "git@github.com:teaching/course.git"):
        _, fields = read_back(material.class_link("https://h", Material(url, "main", "week1/intro.ipynb")))
        assert fields["targetpath"] == "course" and fields["urlpath"] == "lab/tree/course/week1/intro.ipynb"
        assert fields["repo"] == url


def test_branch_open_and_interface() -> None:
    m = Material(COURSE, "", "week 1/first steps.ipynb", "classic")
    link = material.class_link("http://10.0.0.5", m)
    assert "%20" in link and "+" not in link  # spaces as %20, which every reader decodes the same way
    _, fields = read_back(link)
    assert fields == {"repo": COURSE, "urlpath": "tree/course/week 1/first steps.ipynb"}  # no branch: the default


def test_a_students_own_link_names_their_server() -> None:
    m = Material(COURSE, "fall-2026")
    path, fields = read_back(material.student_link("https://hub.example.org:8443", "ada.l", m))
    assert path == "/user/ada.l/git-pull"
    assert fields["branch"] == "fall-2026"
    rows = list(csv.reader(io.StringIO(material.links_csv("https://h", ["ada", "grace"], m))))
    assert rows[0] == ["user", "link"] and [row[0] for row in rows[1:]] == ["ada", "grace"]
    assert rows[2][1] == material.student_link("https://h", "grace", m)


# ---------------------------------------------------------------------------------------------------------------
# What a link brings: flags over settings


def test_flags_win_over_the_settings_and_the_interface_follows_the_hub() -> None:
    s = parse(**{"material.repo": COURSE, "material.open": "intro.ipynb", "hub.default_app": "classic"})
    assert material.material_of(s) == Material(COURSE, "main", "intro.ipynb", "classic")
    other = "git@host:other.git"
    assert material.material_of(s, other, "", "", "jupyterlab") == Material(other, "", "", "jupyterlab")
    assert material.material_of(parse(**{"material.repo": COURSE, "material.app": "jupyterlab",
                                         "hub.default_app": "classic"})).app == "jupyterlab"


@pytest.mark.parametrize(("flags", "message"), [
    ({}, "no course repository: set material.repo (its git URL), or give --repo URL"),
    ({"repo": ""}, "--repo '': is empty; write the repository's URL"),
    ({"repo": "https://host/c d"}, "--repo 'https://host/c d': holds a space; write the repository's URL"),
    ({"repo": COURSE, "branch": "-x"}, "--branch '-x': is not a branch name"),
    ({"repo": COURSE, "branch": "a..b"}, "--branch 'a..b': is not a branch name"),
    ({"repo": COURSE, "open_path": "../x"}, "--open '../x': has an empty, . or .. part"),
    ({"repo": COURSE, "app": "lab"}, "--app 'lab': is not one of the choices; use one of: jupyterlab, classic"),
])
def test_a_bad_flag_is_one_line_naming_it(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        material.material_of(parse(), **flags)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_link_flags_without_link_are_refused() -> None:
    material.refuse_link_flags({"--repo": None, "--branch": None})
    with pytest.raises(UserError, match=r"^--branch goes with --link"):
        material.refuse_link_flags({"--repo": None, "--branch": ""})


# ---------------------------------------------------------------------------------------------------------------
# The hub's address as students reach it


def endpoint(hub_url: str, https_address: tuple[str, int] | None) -> Endpoint:
    return Endpoint(Target("h", "root"), hub_url, "--host", vagrant=False, https_address=https_address)


def test_hub_address_from_where_verify_reaches_it() -> None:
    assert material.hub_url_of(endpoint("http://10.0.0.5:80/hub/api", ("10.0.0.5", 443)), True) == \
        "https://10.0.0.5"
    assert material.hub_url_of(endpoint("http://127.0.0.1:8080/hub/api", ("127.0.0.1", 8443)), True) == \
        "https://127.0.0.1:8443"
    assert material.hub_url_of(endpoint("http://10.0.0.5:80/hub/api", ("hub.example.org", 443)), True) == \
        "https://hub.example.org"  # acme: the public name
    assert material.hub_url_of(endpoint("http://10.0.0.5:8000/hub/api", None), False) == "http://10.0.0.5:8000"
    assert material.hub_url_of(endpoint("http://[fd00::5]:80/hub/api", None), False) == "http://[fd00::5]"
    with pytest.raises(UserError, match=r"HTTPS port is not known from this host \(not forwarded\); give --hub-url"):
        material.hub_url_of(endpoint("http://127.0.0.1:8080/hub/api", None), True)
    guess = Endpoint(Target("127.0.0.1", "vagrant", 2222), "http://127.0.0.1:8080/hub/api",
                     "the Vagrant VM, not created yet", vagrant=True, reachable=False)
    with pytest.raises(UserError, match=r"not known from this host \(the Vagrant VM, not created yet\)"):
        material.hub_url_of(guess, True)


@pytest.mark.parametrize(("value", "result"), [
    ("https://hub.example.org/", "https://hub.example.org"), ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
    ("https://uni.example.org/jupyter", "https://uni.example.org/jupyter"),
])
def test_hub_url_flag(value: str, result: str) -> None:
    assert material.checked_hub_url(value) == result


@pytest.mark.parametrize("value", ["hub.example.org", "ftp://h", "https://", "https://h/?x=1", "https://u@h",
                                   "https://h:0x", "https://h x"])
def test_bad_hub_url_flag_is_one_line(value: str) -> None:
    with pytest.raises(UserError, match=rf"^--hub-url {re.escape(repr(value))}: .*; give the hub's address"):
        material.checked_hub_url(value)


# ---------------------------------------------------------------------------------------------------------------
# run_links: printed or written, nothing imported


def context() -> MockContext:
    return MockContext(config=Config(overrides={"run": {"dry": False}}), run={})  # any command run would fail


def test_links_for_a_host_over_https_and_per_student(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    s = parse(**{"material.repo": COURSE + ".git"})
    text = material.run_links(context(), s, layout, None, None, None, None, None, None, None, "root@10.0.0.5",
                              None, None)
    assert capsys.readouterr().out == text
    assert text.startswith("https://10.0.0.5/hub/user-redirect/git-pull?repo=") and text.count("\n") == 1
    class_csv = tmp_path / "class.csv"
    class_csv.write_text("user name,full name\nada,Ada Lovelace\ngrace\n")
    out = tmp_path / "links" / "class-links.csv"
    plain = parse(**{"material.repo": COURSE, "hub.https": "off"})
    material.run_links(context(), plain, layout, str(class_csv), None, None, "week2", None, None, None,
                       "root@10.0.0.5:2222", None, str(out))
    assert "written to" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [row["user"] for row in rows] == ["ada", "grace"]
    _, fields = read_back(rows[0]["link"])
    assert rows[0]["link"].startswith("http://10.0.0.5/user/ada/git-pull?") and fields["branch"] == "week2"
    assert not (tmp_path / "builds").exists()


def test_links_are_refused_without_nbgitpuller_or_with_reset(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "jupyterhub-vm", "debian12", "virtualbox")
    off = parse(**{"material.nbgitpuller": False, "material.repo": COURSE})
    with pytest.raises(UserError, match=r"^material.nbgitpuller is false: the hub has no nbgitpuller"):
        material.run_links(context(), off, layout, None, None, None, None, None, None, None, "10.0.0.5", None, None)
    with pytest.raises(UserError, match=r"^--reset does not go with --link"):
        material.run_links(context(), parse(), layout, None, "ada", None, None, None, None, None, None, None, None)


def test_users_link_through_the_program(project: Path, home: Path) -> None:
    """The task's flags reach the links; a bad one is one line and exit status 1; builds/ is not made."""
    ok = run_in_process(project, home, ["users", "--link", "--repo", COURSE, "--hub-url", "https://hub.example.org",
                                        "--open", "week1/intro.ipynb", "--app", "classic"])
    assert ok.code == 0, ok.stderr
    _, fields = read_back(ok.stdout.strip())
    assert fields == {"repo": COURSE, "branch": "main", "urlpath": "tree/course/week1/intro.ipynb"}
    for args, start in [
        (["users", "--link", "--repo", "https://h/c d"], "error: --repo 'https://h/c d': holds a space"),
        (["users", "--csv", "x.csv", "--repo", COURSE], "error: --repo goes with --link"),
        (["users", "--link", "--repo", COURSE, "--hub-url", "hub"], "error: --hub-url 'hub': is not an http://"),
    ]:
        bad = run_in_process(project, home, args)
        assert bad.code == 1 and len(bad.lines) == 1 and bad.lines[0].startswith(start), bad.stderr
    off = run_in_process(project, home, ["users", "--link", "--repo", COURSE],
                         env={"INVOKE_MATERIAL_NBGITPULLER": "false"})
    assert off.code == 1 and off.lines[0].startswith("error: material.nbgitpuller is false")
    assert not (project / "builds" / "users").exists()
