"""Black-box fixtures: a real mock upstream and the built `flowgate` binary, started as a
user would start them (production mode, environment secrets, a config file), plus a tenant
created through the admin API. Binaries come from FLOWGATE_BIN / FLOWGATE_MOCK_BIN."""

import base64
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request

import pytest

import anthropic_upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def admin_call(base: str, admin_key: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Gateway:
    def __init__(self, base_url: str, admin_key: str, tenant_key: str, upstream_url: str):
        self.base_url = base_url
        self.admin_key = admin_key
        self.tenant_key = tenant_key
        self.upstream_url = upstream_url
        # What the Anthropic-format upstream behind model `claude-sonnet` last received.
        self.anthropic_upstream = anthropic_upstream.Handler


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    flowgate_bin = os.environ["FLOWGATE_BIN"]
    mock_bin = os.environ["FLOWGATE_MOCK_BIN"]
    work = tmp_path_factory.mktemp("gateway")
    mock_port, port, internal_port = free_port(), free_port(), free_port()
    mock = subprocess.Popen([mock_bin, "--listen", f"127.0.0.1:{mock_port}"])
    wait_for_port(mock_port, mock)
    claude_server, claude_port = anthropic_upstream.start()
    (work / "flowgate.toml").write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
internal_listen = "127.0.0.1:{internal_port}"

[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[[models]]
name = "gpt-4o-mini"
routes = [ {{ provider = "upstream" }} ]

[[models]]
name = "text-embedding-3-small"
routes = [ {{ provider = "upstream" }} ]

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://127.0.0.1:{claude_port}/v1"
api_key_env = "TEST_ANTHROPIC_KEY"

[[models]]
name = "claude-sonnet"
routes = [ {{ provider = "claude", model = "claude-upstream" }} ]
"""
    )
    admin_key = "fga_" + secrets.token_hex(24)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLOWGATE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "FLOWGATE_ADMIN_API_KEY": admin_key,
        "FLOWGATE_DATABASE_URL": f"sqlite://{work}/flowgate.db",
        "FLOWGATE_LOG_LEVEL": "warn",
        "TEST_ANTHROPIC_KEY": "sk-ant-test-credential",
    }
    server = subprocess.Popen([flowgate_bin, "serve"], cwd=work, env=env)
    try:
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}"
        tenant = admin_call(base, admin_key, "POST", "/v1/tenants", {"name": "sdk"})
        yield Gateway(base, admin_key, tenant["api_key"], f"http://127.0.0.1:{mock_port}/v1")
    finally:
        server.terminate()
        mock.terminate()
        claude_server.shutdown()
        server.wait(timeout=15)
        mock.wait(timeout=15)
