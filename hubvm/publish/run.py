"""The `publish` task: builds/vm/'s qcow2 to the configured cloud's image service. The export must be current: a
setting that says only where or how to publish (publish.*, and every setting the schema marks NOWHERE) never
makes it stale; when the appliance's own inputs changed, pack, up, verify and export run first (as `all`)."""

from __future__ import annotations

from typing import Any

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.host import tools
from hubvm.layout import Layout
from hubvm.pipeline import all_steps, export_is_current
from hubvm.publish.request import plan, read_export, request_for_export
from hubvm.publish.upload import publish
from hubvm.report import StepResult, human_bytes
from hubvm.shell import rel, step


def publish_export(c: Any, s: Settings, replace: bool = False) -> StepResult:
    layout = Layout.of(s)
    if "qcow2" not in s.export.formats:
        raise UserError(f"publish uploads the qcow2, and export.formats = {list(s.export.formats)} makes none; "
                        "add qcow2 to export.formats")
    if not export_is_current(s):
        print("publish: builds/vm/ is not the export of the current box and configuration: pack, up, verify and "
              "export first")
        all_steps(c, s)
    with step(c, "publish", layout) as sh:
        qcow2 = layout.artifact(f"{s.vm.name}.qcow2")
        try:
            facts = read_export(layout.vm_dir, s.vm.name)
        except UserError:
            if not sh.dry:
                raise
            sh.say(f"[dry run] publish would upload {rel(qcow2, s.project_dir)} once the export has made it")
            return StepResult("publish", "dry run", sh.log.elapsed())
        request = request_for_export(
            facts, cloud=s.publish.cloud or None, image_name=s.publish.image_name,
            disk_format=s.publish.disk_format, visibility=s.publish.visibility, tags=s.publish.tags,
            properties=s.publish.properties, min_disk_gb=s.publish.min_disk_gb, min_ram_mb=s.publish.min_ram_mb,
            disk_bus=s.publish.disk_bus, replace=replace, active_timeout=s.publish.active_timeout,
            qemu_img=tools.command(s, "qemu_img"), raw_file=layout.publish_dir / f"{s.vm.name}.raw")
        if sh.dry:
            for line in plan(request):
                sh.say(f"[dry run] publish would {line}")
            return StepResult("publish", "dry run", sh.log.elapsed())
        if request.converts:
            layout.publish_dir.mkdir(parents=True, exist_ok=True)
        result = publish(request, run=lambda command: sh.run(command), say=sh.say)
        detail = (f"{result.image_id} skipped (same digest)" if result.status == "skipped" else
                  f"image {result.image_id}, {human_bytes(result.bytes)} at {human_bytes(result.rate)}/s")
        return StepResult("publish", result.status, sh.log.elapsed(), detail)
