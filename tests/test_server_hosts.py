"""The served studio refuses a WebSocket whose Host is not one of its own names (DNS rebinding), from its own
.streamlit/config.toml (server.allowedHosts)."""

from __future__ import annotations

import base64
import os
import socket

import pytest

from test_browser import dashboard

pytestmark = pytest.mark.slow


def websocket_status(url: str, host: str) -> int:
    """The HTTP status of a WebSocket handshake to the studio's stream with `host` as Host and Origin."""
    port = int(url.rsplit(":", 1)[1])
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        status_line = sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
    return int(status_line.split()[1])


def test_websocket_from_a_foreign_host_name_is_refused(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with dashboard(artifacts, tmp_path / "no_data") as url:
        port = url.rsplit(":", 1)[1]
        assert websocket_status(url, f"127.0.0.1:{port}") == 101
        assert websocket_status(url, f"localhost:{port}") == 101
        assert websocket_status(url, f"evil.example:{port}") != 101
        assert websocket_status(url, f"localhost.evil.example:{port}") != 101
