"""Everything openstacksdk and keystoneauth raise, as one line that names the setting or the cloud, the value and
the fix."""

from __future__ import annotations

import os
import re

from hubvm.errors import UserError
from hubvm.publish.request import PublishRequest
from hubvm.report import human_bytes

CONNECT, LIST, CREATE, UPLOAD, CHECK, REPLACE = "connect", "list", "create", "upload", "check", "replace"


class PublishFailed(UserError):
    """A publish that failed after the image record was created (the record is deleted, or said to be left)."""


class ChecksumMismatch(UserError):
    """What Glance stored is not what was sent, or the file is not what the export wrote."""


def server_message(error: BaseException) -> str:
    """The server's own words, without HTML and without the repeated status line ("413 Request Entity ...")."""
    text = str(getattr(error, "details", None) or getattr(error, "message", None) or error)
    parts = [p.strip() for p in re.split(r":\s+|\n", re.sub(r"<[^>]+>", " ", text)) if p.strip()]
    kept = [p for p in parts if not re.fullmatch(r"\d{3}(\s+[A-Za-z][A-Za-z ]*)?|Error|HttpException", p)]
    message = ": ".join(dict.fromkeys(kept)) or text
    return " ".join(message.split())[:300]


def _status(error: BaseException) -> int | None:
    for attribute in ("status_code", "http_status"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _unreachable_reason(error: BaseException) -> tuple[str, str]:
    """(url, reason) from keystoneauth's "Unable to establish connection to URL: ... [Errno 111] Connection
    refused" and its read-timeout and dropped-connection variants."""
    text = str(error)
    url_match = re.search(r"(https?://[^\s:'\",]+(?::\d+)?[^\s:'\",]*)", text)
    url = url_match.group(1) if url_match else "?"
    for pattern, reason in ((r"Errno 111|Connection refused", "connection refused (nothing listening)"),
                            (r"Errno -2|Name or service not known|getaddrinfo", "host name not found"),
                            (r"Errno 113|No route to host", "no route to host"),
                            (r"timed out|Timeout", "no answer (timed out)"),
                            (r"RemoteDisconnected|Connection aborted|reset by peer|Broken pipe|Errno 104|Errno 32",
                             "the server closed the connection"),
                            (r"SSL|certificate", "TLS failed (certificate?)")):
        if re.search(pattern, text):
            return url, reason
    return url, text.splitlines()[0][:200] if text else type(error).__name__


def tcp_unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at the URL's host and port (refused, unknown host, ...), or None when something does."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        return _unreachable_reason(error)[1]
    return None


def explain(error: BaseException, phase: str, request: PublishRequest, sent: int = 0, total: int = 0) -> UserError:
    """One line for what went wrong in `phase`; names the setting or the cloud, the value and the fix."""
    if isinstance(error, UserError):
        return error
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    cloud = request.cloud_label
    status = _status(error)
    if isinstance(error, sdk.ConfigException) and "was not found" in str(error):
        setting = (f"publish.cloud = {request.cloud!r}" if request.cloud
                   else f"OS_CLOUD = {os.environ.get('OS_CLOUD')!r}")
        return UserError(f"{setting}: no such cloud in {_clouds_files()} (clouds there: {_cloud_names()}); name one "
                         "of them, or add it to clouds.yaml")
    if isinstance(error, (ksa.MissingRequiredOptions, ksa.MissingAuthPlugin, ksa.NoMatchingPlugin)):
        return UserError(f"no cloud to publish to ({error}): set publish.cloud to a cloud of clouds.yaml, or "
                         "OS_CLOUD, or source the project's openrc file (OS_AUTH_URL, OS_USERNAME, ...)")
    if isinstance(error, sdk.ConfigException):
        return UserError(f"publish.cloud = {request.cloud!r}: its configuration is not usable: {error}")
    if isinstance(error, ksa.Unauthorized) or status == 401:
        url = getattr(error, "url", None) or ""
        at = f" at {url}" if url else ""
        return UserError(f"{cloud} refused the credentials (401 Unauthorized{at}): check auth.username, "
                         "auth.password and the project in clouds.yaml (or OS_USERNAME, OS_PASSWORD)")
    # requests' HTTPError, and so openstacksdk's HttpException, is an OSError: answers come before connections
    if status == 413:
        message = server_message(error)
        if "quota" in message.lower():
            return UserError(f"{cloud} refused the upload, the image storage quota is exceeded ({message}); "
                             "delete old images (openstack image list) or ask the cloud's admins for more")
        return UserError(f"{cloud} refused the upload, the image is too large for it ({human_bytes(total)}: "
                         f"{message}); publish the compressed qcow2 (publish.disk_format qcow2) or ask its admins")
    if status == 403 and phase == CREATE and request.visibility != "private":
        return UserError(f"publish.visibility = {request.visibility!r}: {cloud} does not let this account create "
                         f"{request.visibility} images (403: {server_message(error)}); use private or shared, "
                         "or ask the cloud's admins")
    if status is not None:
        return UserError(f"{cloud} refused to {_verb(phase)} ({status}: {server_message(error)})")
    if isinstance(error, ksa.EndpointNotFound):
        return UserError(f"{cloud} has no image service in its catalog ({error}): check region_name and "
                         "interface in clouds.yaml")
    if isinstance(error, ksa.DiscoveryFailure):
        # keystoneauth says the same for "nothing listens there" and "that is not an OpenStack API": ask the port
        url, _ = _unreachable_reason(error)
        reason = tcp_unreachable(url)
        if reason:
            return UserError(f"cannot reach {cloud} at {url}: {reason}; check auth_url or endpoint in clouds.yaml "
                             "and the network (VPN, proxy)")
        return UserError(f"{cloud}: no OpenStack Image API found at {url}; check auth_url or endpoint in "
                         "clouds.yaml (the service's root URL, without /v2)")
    if isinstance(error, (ksa.ConnectionError, ksa.ConnectFailure)) or (
            isinstance(error, OSError) and not isinstance(error, FileNotFoundError)):
        url, reason = _unreachable_reason(error)
        if phase == UPLOAD and sent:
            return UserError(f"the connection to {cloud} dropped during the upload, after {human_bytes(sent)} of "
                             f"{human_bytes(total)} ({reason}, {url}); run publish again when the cloud answers")
        return UserError(f"cannot reach {cloud} at {url}: {reason}; check auth_url or endpoint in clouds.yaml "
                         "and the network (VPN, proxy)")
    if isinstance(error, (sdk.SDKException, ksa.ClientException)):
        return UserError(f"{cloud}: could not {_verb(phase)}: {str(error).splitlines()[0][:300]}")
    return UserError(f"could not {_verb(phase)}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")


def _verb(phase: str) -> str:
    return {CONNECT: "connect", LIST: "list the images", CREATE: "create the image", UPLOAD: "store the upload",
            CHECK: "check the uploaded image", REPLACE: "rename the replaced image"}.get(phase, phase)


def _clouds_files() -> str:
    from openstack.config import loader

    config = loader.OpenStackConfig()
    return config.config_filename or "clouds.yaml (none found: ~/.config/openstack/, /etc/openstack/ or ./)"


def _cloud_names() -> str:
    from openstack.config import loader

    names = [n for n in loader.OpenStackConfig().get_cloud_names() if n != "defaults"]
    return ", ".join(names) or "none"


