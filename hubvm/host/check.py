"""`check`: everything this configuration needs on this host, as a table (or JSON), and one line for the gaps."""

from __future__ import annotations

import json
from typing import Any

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host.probes import Finding, probes_of
from hubvm.host.tools import needs
from hubvm.report import table


def check_table(findings: list[Finding]) -> str:
    return table(["need", "status", "found", "version", "minimum", "how to fix"],
                 [(f.name, f.status, f.path or "-", f.version or "-", f.minimum, f.fix or "-") for f in findings])


def run(c: Any, s: Settings, as_json: bool = False) -> None:
    found = probes_of(c)
    findings = [found.find(name, s) for name in needs("check", s)]
    gaps = [f for f in findings if not f.ok]
    if as_json:
        print(json.dumps({"ok": not gaps, "provider": s.vm.provider, "image_source": s.image.source,
                          "findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        print(f"provider {s.vm.provider}, base image {s.image.source} ({s.os_data['name']}), "
              f"accelerator {s.vm.accelerator}")
        print(check_table(findings))
    if gaps:
        raise UserError("not ready: " + ", ".join(f"{f.name} ({f.status})" for f in gaps))
