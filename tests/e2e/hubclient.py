"""A small JupyterHub web client for the end-to-end tests: what a user does in a browser, over HTTP.

    hub = HubClient("http://10.199.3.2")
    hub = HubClient("https://10.199.3.2", ssl_context=ssl.create_default_context(cadata=hub_certificate_pem))
    hub.login("alice", "a-long-password")       # a user the hub knows (or, with open sign-up, a new one)
    hub.start_server()                           # spawn alice's server and wait until it is ready
    hub.run_code("python3", "5*4")              # -> "20" (the kernel's text/plain result or output)

Only the standard library plus websocket-client (a test dependency) is used, so the test host needs nothing
else. Every request goes to the base URL given, which the tests point at a namespace they created. An https URL
needs an SSL context that verifies the hub's certificate (pinned to it, or to the CA that signed it): there is
no way to switch verification off here.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


class HubError(RuntimeError):
    """The hub or the user's server answered something unexpected."""


@dataclass
class KernelResult:
    """What one execute_request produced: the text/plain result and stream output, and any error."""

    text: str
    error: str = ""


class HubClient:
    def __init__(self, base_url: str, timeout: float = 30, ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if self.base_url.startswith("https:") and (ssl_context is None or ssl_context.verify_mode != ssl.CERT_REQUIRED):
            raise ValueError("an https hub needs an ssl_context that verifies its certificate (pinned or a test CA)")
        self.ssl_context = ssl_context
        self.cookies = http.cookiejar.CookieJar()
        # No proxy: the hub is in a network namespace next to us, never behind the host's proxy.
        handlers: list[Any] = [urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies)]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self.opener = urllib.request.build_opener(*handlers)
        self.user = ""
        self.token = ""

    # --- plain HTTP

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, Any]:
        """Send one request; return (status, body bytes, response). HTTP errors are returned, not raised."""
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.token:
            all_headers.setdefault("Authorization", f"token {self.token}")
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as response:
                return response.status, response.read(), response
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, expect=(200,)) -> Any:
        """Call the hub's REST API (/hub/api...) and decode its JSON answer."""
        status, content, _ = self.request(method, "/hub/api" + path, body=body)
        if status not in expect:
            raise HubError(f"{method} /hub/api{path} answered {status}: {content[:300]!r}")
        return json.loads(content) if content else None

    def version(self) -> str:
        """The hub's version, from /hub/api (no login needed)."""
        return self.api("GET", "")["version"]

    # --- what a user does

    def _xsrf(self) -> str:
        for cookie in self.cookies:
            if cookie.name == "_xsrf":
                return cookie.value
        return ""

    def login(self, user: str, password: str) -> None:
        """Log in through the login form (first-use authentication creates the user), then get an API token."""
        status, page, _ = self.request("GET", "/hub/login")
        if status != 200:
            raise HubError(f"GET /hub/login answered {status}")
        match = re.search(rb'name="_xsrf" value="([^"]+)"', page)
        xsrf = match.group(1).decode() if match else self._xsrf()
        form = {"username": user, "password": password, "_xsrf": xsrf}
        next_page = urllib.parse.quote("/hub/home")
        status, content, _ = self.request("POST", f"/hub/login?next={next_page}", form=form)
        if not any(cookie.name.startswith("jupyterhub-session") for cookie in self.cookies):
            raise HubError(f"login as {user} failed ({status}): {content[:300]!r}")
        self.user = user
        # The session cookie works for the hub's pages; the API wants a token (or the XSRF header).
        status, content, _ = self.request(
            "POST",
            f"/hub/api/users/{user}/tokens",
            body={"note": "hubvm e2e test", "expires_in": 3600},
            headers={"X-XSRFToken": self._xsrf(), "Referer": self.base_url + "/hub/home"},
        )
        if status not in (200, 201):
            raise HubError(f"creating an API token for {user} answered {status}: {content[:300]!r}")
        self.token = json.loads(content)["token"]

    def start_server(self, timeout: float = 300) -> dict[str, Any]:
        """Start the user's default server and wait until the hub reports it ready; return its model."""
        status, content, _ = self.request("POST", f"/hub/api/users/{self.user}/server")
        if status not in (201, 202, 400):  # 400: already running
            raise HubError(f"starting {self.user}'s server answered {status}: {content[:300]!r}")
        started = time.monotonic()
        while True:
            model = self.api("GET", f"/users/{self.user}")
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return server
            waited = time.monotonic() - started
            if not server and waited > 10:  # neither pending nor ready: the spawn failed
                raise HubError(f"{self.user}'s server failed to start: {model}")
            if waited > timeout:
                raise HubError(f"{self.user}'s server not ready after {timeout:.0f} s: {server}")
            time.sleep(1)

    def stop_server(self) -> None:
        self.request("DELETE", f"/hub/api/users/{self.user}/server")

    # --- the user's Jupyter server

    def server_api(self, method: str, path: str, body: dict[str, Any] | None = None, expect=(200,)) -> Any:
        status, content, _ = self.request(method, f"/user/{self.user}/api{path}", body=body)
        if status not in expect:
            raise HubError(f"{method} /user/{self.user}/api{path} answered {status}: {content[:300]!r}")
        return json.loads(content) if content else None

    def kernelspecs(self) -> list[str]:
        return sorted(self.server_api("GET", "/kernelspecs")["kernelspecs"])

    def run_code(self, kernel_name: str, code: str, timeout: float = 120) -> KernelResult:
        """Start a kernel, run code in it over the kernel websocket, shut the kernel down; return what it said."""
        import websocket  # websocket-client, a test dependency

        kernel = self.server_api("POST", "/kernels", body={"name": kernel_name}, expect=(201,))
        url = self.base_url.replace("http", "ws", 1) + f"/user/{self.user}/api/kernels/{kernel['id']}/channels"
        ws = websocket.create_connection(
            url,
            header=[f"Authorization: token {self.token}"],
            timeout=timeout,
            http_proxy_host=None,
            sslopt={"context": self.ssl_context} if self.ssl_context is not None else None,
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(_execute_request(msg_id, code, self.user)))
            return _collect_result(ws, msg_id, timeout)
        finally:
            ws.close()
            self.server_api("DELETE", f"/kernels/{kernel['id']}", expect=(204,))


def _execute_request(msg_id: str, code: str, user: str) -> dict[str, Any]:
    """A Jupyter messaging protocol (v5) execute_request for the shell channel."""
    return {
        "header": {
            "msg_id": msg_id,
            "username": user,
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": datetime.now(timezone.utc).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def _collect_result(ws: Any, msg_id: str, timeout: float) -> KernelResult:
    """Read iopub messages answering msg_id until the kernel goes idle."""
    texts: list[str] = []
    error = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = ws.recv()
        if isinstance(raw, bytes):  # binary frames carry buffers, not results we look for
            continue
        message = json.loads(raw)
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        content = message.get("content", {})
        if kind in ("execute_result", "display_data"):
            texts.append(content.get("data", {}).get("text/plain", ""))
        elif kind == "stream":
            texts.append(content.get("text", ""))
        elif kind == "error":
            error = f"{content.get('ename')}: {content.get('evalue')}"
        elif kind == "status" and content.get("execution_state") == "idle":
            return KernelResult("".join(texts).strip(), error)
    raise HubError(f"no answer from the kernel within {timeout:.0f} s")
