"""hubvm.publish.errors without a server: the one-line errors made of what openstacksdk and keystoneauth raise
(unknown clouds, HTTP answers, connections that fail or drop, anything else). The uploads themselves run against
a real glance-api in tests/e2e/test_publish.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubvm.publish.errors import CHECK, CONNECT, CREATE, LIST, UPLOAD, explain
from tests.publish.helpers import request


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(variable)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"alpha": {"auth_type": "none", "auth": {"endpoint": "http://x"}},
                                               "beta": {"auth_type": "none", "auth": {"endpoint": "http://y"}}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def raised_by(action: Any) -> BaseException:
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("nothing raised")


def test_an_unknown_cloud_lists_the_clouds_of_clouds_yaml(qcow2: Path, clouds_yaml: Path) -> None:
    import openstack

    error = raised_by(lambda: openstack.connect(cloud="gamma"))
    assert str(explain(error, CONNECT, request(qcow2, cloud="gamma"))) == (
        f"publish.cloud = 'gamma': no such cloud in {clouds_yaml} (clouds there: alpha, beta); name one of them, "
        "or add it to clouds.yaml")


def test_an_unknown_os_cloud_names_the_variable(qcow2: Path, clouds_yaml: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import openstack

    monkeypatch.setenv("OS_CLOUD", "gamma")
    error = raised_by(lambda: openstack.connect())
    assert str(explain(error, CONNECT, request(qcow2, cloud=None))).startswith(
        f"OS_CLOUD = 'gamma': no such cloud in {clouds_yaml} (clouds there: alpha, beta)")


def test_no_cloud_at_all_says_where_a_cloud_comes_from(qcow2: Path, clouds_yaml: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import openstack

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml.with_name("absent.yaml")))
    error = raised_by(lambda: list(openstack.connect().image.images()))
    assert str(explain(error, LIST, request(qcow2, cloud=None))) == (
        "no cloud to publish to (Auth plugin requires parameters which were not given: auth_url): set "
        "publish.cloud to a cloud of clouds.yaml, or OS_CLOUD, or source the project's openrc file (OS_AUTH_URL, "
        "OS_USERNAME, ...)")


def test_http_answers_become_their_lines(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    html = ("413 Request Entity Too Large: 413 Request Entity Too Large: Image exceeds the storage quota: The size "
            "of the data 8716288 will exceed the limit. 2097152 bytes remaining.")
    quota = sdk.HttpException("413: Client Error", http_status=413, details=html)
    assert str(explain(quota, UPLOAD, request(qcow2), 8 << 20, 8 << 20)) == (
        "cloud 'mycloud' refused the upload, the image storage quota is exceeded (Image exceeds the storage quota: "
        "The size of the data 8716288 will exceed the limit. 2097152 bytes remaining.); delete old images "
        "(openstack image list) or ask the cloud's admins for more")
    too_large = sdk.HttpException("413", http_status=413, details="The incoming image is too large")
    assert str(explain(too_large, UPLOAD, request(qcow2), 1 << 30, 1 << 30)).startswith(
        "cloud 'mycloud' refused the upload, the image is too large for it (1.0 GiB: The incoming image is too large)")
    forbidden = sdk.ForbiddenException("403", http_status=403,
                                       details="You are not authorized to complete publicize_image action.")
    assert str(explain(forbidden, CREATE, request(qcow2, visibility="public"))) == (
        "publish.visibility = 'public': cloud 'mycloud' does not let this account create public images (403: You "
        "are not authorized to complete publicize_image action.); use private or shared, or ask the cloud's admins")
    assert str(explain(forbidden, LIST, request(qcow2))) == (
        "cloud 'mycloud' refused to list the images (403: You are not authorized to complete publicize_image "
        "action.)")
    unauthorized = ksa.Unauthorized(http_status=401, url="https://keystone.example:5000/v3/auth/tokens")
    assert str(explain(unauthorized, LIST, request(qcow2))) == (
        "cloud 'mycloud' refused the credentials (401 Unauthorized at https://keystone.example:5000/v3/auth/tokens):"
        " check auth.username, auth.password and the project in clouds.yaml (or OS_USERNAME, OS_PASSWORD)")


def test_connection_failures_say_where_and_why(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa

    refused = ksa.ConnectFailure("Unable to establish connection to https://glance.example:9292/v2/images: "
                                 "HTTPSConnectionPool(...): [Errno 111] Connection refused")
    assert str(explain(refused, LIST, request(qcow2))) == (
        "cannot reach cloud 'mycloud' at https://glance.example:9292/v2/images: connection refused (nothing "
        "listening); check auth_url or endpoint in clouds.yaml and the network (VPN, proxy)")
    dropped = ksa.ConnectFailure("Unable to establish connection to http://g:9292/v2/images/1/file: ('Connection "
                                 "aborted.', RemoteDisconnected('Remote end closed connection without response'))")
    assert str(explain(dropped, UPLOAD, request(qcow2), 300 << 20, 1536 << 20)) == (
        "the connection to cloud 'mycloud' dropped during the upload, after 300.0 MiB of 1.5 GiB (the server "
        "closed the connection, http://g:9292/v2/images/1/file); run publish again when the cloud answers")


def test_a_failed_discovery_asks_the_port_whether_anything_listens(qcow2: Path) -> None:
    from keystoneauth1 import exceptions as ksa

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    message = "Unable to find a version discovery document at {}, the service is unavailable or misconfigured."
    error = ksa.DiscoveryFailure(message.format(f"http://127.0.0.1:{closed}"))
    assert str(explain(error, LIST, request(qcow2))).startswith(
        f"cannot reach cloud 'mycloud' at http://127.0.0.1:{closed}: connection refused (nothing listening)")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        error = ksa.DiscoveryFailure(message.format(f"http://127.0.0.1:{port}"))
        assert str(explain(error, LIST, request(qcow2))) == (
            f"cloud 'mycloud': no OpenStack Image API found at http://127.0.0.1:{port}; check auth_url or endpoint "
            "in clouds.yaml (the service's root URL, without /v2)")


def test_anything_else_is_still_one_line(qcow2: Path) -> None:
    from openstack import exceptions as sdk

    error = sdk.SDKException("something odd\nwith a second line")
    assert str(explain(error, CHECK, request(qcow2))) == \
        "cloud 'mycloud': could not check the uploaded image: something odd"
    assert str(explain(ValueError("bad\nvalue"), CHECK, request(qcow2))) == \
        "could not check the uploaded image: ValueError: bad"
