"""hubvm.verify.connect without a machine: the few words for why a connection attempt failed, and the one line
when nothing listens once ssh.wait is over."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import paramiko
import pytest

from hubvm.config.settings import Settings
from hubvm.errors import UserError
from hubvm.layout import Layout
from hubvm.verify import connect
from hubvm.verify.endpoint import Endpoint
from hubvm.verify.target import Target


def test_connection_reasons() -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 2222): OSError(errno.ECONNREFUSED,
                                                                                            "refused")})
    assert connect.connection_reason(refused, 10) == "connection refused"
    assert connect.connection_reason(TimeoutError(), 10) == "no answer within 10 s"
    assert connect.connection_reason(paramiko.SSHException("Error reading SSH protocol banner"), 10) \
        == "no SSH greeting (sshd not ready?)"


def test_nothing_listening_is_one_line_after_the_wait(layout: Layout, vm_settings: Callable[..., Settings]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = vm_settings(**{"ssh.wait": 0, "ssh.connect_timeout": 2})
    endpoint = Endpoint(Target("127.0.0.1", "vagrant", port), "http://127.0.0.1:1/hub/api", "--host", False)
    with pytest.raises(UserError) as caught:
        connect.connect(s, layout, endpoint, lambda message: None)
    assert str(caught.value) == (f"cannot reach vagrant@127.0.0.1:{port}: connection refused; is the machine up, "
                                 f"with sshd listening on port {port}?")
