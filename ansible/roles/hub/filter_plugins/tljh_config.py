"""Filters of the hub role: which of TLJH's configuration values differ from the settings.

    hub_tljh_changes: "{{ config_yaml_text | tljh_config_changes(hub_tljh_settings) }}"

TLJH keeps its configuration in config/config.yaml (nested keys, written by tljh-config); a setting is
{key: "limits.memory", value: "2G", reload: hub}. A value compares equal as tljh-config would write it: as text,
case-insensitive ("True" and "true" are the same boolean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml


def _config(text: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    data = yaml.safe_load(text) if isinstance(text, str) else text
    return data if isinstance(data, Mapping) else {}


def lookup(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key ("https.letsencrypt.email"), or "" where the path does not exist."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    return node


def tljh_config_changes(text: str | Mapping[str, Any] | None,
                        settings: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The settings whose value in TLJH's configuration differs from the wanted one (in their order)."""
    config = _config(text)
    return [setting for setting in settings
            if str(lookup(config, setting["key"])).lower() != str(setting["value"]).lower()]


def tljh_letsencrypt_domains(text: str | Mapping[str, Any] | None) -> list[str]:
    """The Let's Encrypt domains TLJH's configuration lists (https.letsencrypt.domains)."""
    domains = lookup(_config(text), "https.letsencrypt.domains")
    return list(domains) if isinstance(domains, list) else []


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tljh_config_changes": tljh_config_changes, "tljh_letsencrypt_domains": tljh_letsencrypt_domains}
