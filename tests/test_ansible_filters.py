"""The hub role's filter plugins (ansible/roles/hub/filter_plugins/): which TLJH configuration values differ from
the settings. The tljh flavour's end-to-end test runs them inside Ansible."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import yaml

from tests.conftest import REPO

PLUGIN = REPO / "ansible/roles/hub/filter_plugins/tljh_config.py"
SETTINGS = [
    {"key": "limits.memory", "value": "2G", "reload": "hub"},
    {"key": "auth.FirstUseAuthenticator.create_users", "value": "false", "reload": "hub"},
    {"key": "https.enabled", "value": "true", "reload": "proxy"},
    {"key": "https.letsencrypt.email", "value": "", "reload": "proxy"},
]


def plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tljh_config", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_offers_its_filters_to_ansible() -> None:
    assert set(plugin().FilterModule().filters()) == {"tljh_config_changes", "tljh_letsencrypt_domains"}


def test_only_values_that_differ_are_changes() -> None:
    changes = plugin().tljh_config_changes
    config = yaml.safe_dump({"limits": {"memory": "2G"}, "auth": {"FirstUseAuthenticator": {"create_users": False}},
                             "https": {"enabled": False}})
    assert [s["key"] for s in changes(config, SETTINGS)] == ["https.enabled"]  # False == "false", "" for missing
    assert [s["key"] for s in changes("", SETTINGS)] == ["limits.memory", "auth.FirstUseAuthenticator.create_users",
                                                         "https.enabled"]
    assert changes("limits: 5\n", SETTINGS)[0]["key"] == "limits.memory"  # a value where a mapping was expected


def test_the_letsencrypt_domains_are_read_where_tljh_keeps_them() -> None:
    domains = plugin().tljh_letsencrypt_domains
    assert domains("https:\n  letsencrypt:\n    domains: [hub.example.org]\n") == ["hub.example.org"]
    assert domains("") == [] and domains("https: {letsencrypt: {domains: x}}") == []
