"""The verify boot's QEMU command (an overlay, by the disk's own boot loader, reaching nothing but its forwards)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hubvm.native import qemuboot


def test_the_verify_boot_boots_an_overlay_by_its_own_boot_loader_reaching_nothing() -> None:
    machine = qemuboot.Machine(Path("/b/overlay.qcow2"), "tcg", 2, 2048, 40022, 18080, 80, Path("/l/console"),
                               Path("/b/qemu.pid"))
    argv = shlex.split(qemuboot.start_command("qemu-system-x86_64", machine))
    assert "-kernel" not in argv and "-initrd" not in argv
    assert argv[argv.index("-machine") + 1] == "pc,accel=tcg"
    assert argv[argv.index("-drive") + 1] == "file=/b/overlay.qcow2,if=virtio,format=qcow2"
    assert argv[argv.index("-netdev") + 1] == ("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,"
                                               "hostfwd=tcp:127.0.0.1:18080-:80")
    assert argv[-3:] == ["-daemonize", "-pidfile", "/b/qemu.pid"]
    kvm = qemuboot.Machine(**{**vars(machine), "accelerator": "kvm"})
    assert "pc,accel=kvm" in qemuboot.start_command("qemu-system-x86_64", kvm)
    overlay = qemuboot.overlay_command("qemu-img", Path("/v/app.qcow2"), Path("/b/overlay.qcow2"))
    assert overlay == "qemu-img create -q -f qcow2 -b /v/app.qcow2 -F qcow2 /b/overlay.qcow2"
