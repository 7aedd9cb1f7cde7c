"""The shipped nginx configuration (deploy/nginx/vats.conf) in front of real core and gateway
processes: TLS, card streams without buffering, large recordings streamed through, signed
links with the https scheme, and the client's address in the gateway's logs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, LiveStack, free_port
from tests.e2e.sse import SSEReader

from .conftest import unavailable

pytestmark = pytest.mark.deploy

VATS_CONF = ROOT / "deploy" / "nginx" / "vats.conf"
# The client's own address: on loopback, one other than nginx's (127.0.0.1), so that the
# gateway's log can tell the two apart.
CLIENT_ADDRESS = "127.0.0.2"
# Only tells "arrived" from "stuck in a buffer"; never a performance bound.
ARRIVES_WITHIN = 10.0
RECORDING_BYTES = 150 * 1024 * 1024
# Growth of a process's peak resident memory that still counts as flat while 150 MB pass.
FLAT_MEMORY = 64 * 1024 * 1024
BOUNDARY = "nginx-upload-boundary-5b1e"


def render(conf: str, replacements: dict[str, str]) -> str:
    """The shipped file with its placeholders filled in, each of which must be there."""
    for placeholder, value in replacements.items():
        assert placeholder in conf, f"{placeholder!r} is no longer in {VATS_CONF}"
        conf = conf.replace(placeholder, value)
    return conf


@dataclass
class Nginx:
    """A real nginx of the test's own: its config, pid file, logs and temp paths in `root`."""

    root: Path
    https_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def error_log(self) -> str:
        return (self.root / "error.log").read_text(errors="replace")

    @property
    def body_temp(self) -> Path:
        return self.root / "client_body"

    def worker_pid(self) -> int:
        workers = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                parent = int(stat.read_text().rpartition(")")[2].split()[1])
                if parent == self.process.pid:
                    workers.append(int(stat.parent.name))
        assert len(workers) == 1, f"one worker expected, not {workers}"
        return workers[0]


def start_nginx(
    binary: str, root: Path, cert: Path, key: Path, upstream: str, https_port: int
) -> Nginx:
    http_port = free_port()
    vats = render(
        VATS_CONF.read_text(),
        {
            "server 127.0.0.1:8080;": f"server {upstream};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
            "listen [::]:443 ssl http2;": "",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen [::]:80;": "",
            "server_name vats.example.com;": "server_name 127.0.0.1;",
            "/etc/nginx/ssl/vats.crt": str(cert),
            "/etc/nginx/ssl/vats.key": str(key),
        },
    )
    (root / "vats.conf").write_text(vats)
    # As root, nginx's workers would run as `nobody`, who cannot enter the test's directory.
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(
        f"""
        daemon off;
        {user}
        worker_processes 1;
        pid {root}/nginx.pid;
        error_log {root}/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            access_log {root}/access.log;
            client_body_temp_path {root}/client_body;
            proxy_temp_path {root}/proxy;
            fastcgi_temp_path {root}/fastcgi;
            uwsgi_temp_path {root}/uwsgi;
            scgi_temp_path {root}/scgi;
            include {root}/vats.conf;
        }}
        """
    )
    conf, log = root / "nginx.conf", root / "error.log"
    command = [binary, "-p", f"{root}/", "-c", str(conf), "-e", str(log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx = Nginx(root, https_port, http_port, process)
    try:
        wait_until_serving(nginx, cert)
    except BaseException:
        stop_nginx(nginx)
        raise
    return nginx


def wait_until_serving(nginx: Nginx, cert: Path) -> None:
    """Until a worker answers, through to the gateway: not only listening."""
    verify = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{nginx.url}/livez", verify=verify, timeout=1).status_code == 200:
                return
        if nginx.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start:\n{nginx.error_log}")
        time.sleep(0.05)


def stop_nginx(nginx: Nginx) -> None:
    if nginx.process.poll() is None:
        # Fast shutdown: open card streams would hold up a graceful one (SIGQUIT).
        nginx.process.terminate()
        try:
            nginx.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.process.kill()
            nginx.process.wait()


def make_certificate(root: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        unavailable("openssl is missing (apt-get install openssl)")
    cert, key = root / "vats.crt", root / "vats.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@dataclass
class Deployment:
    stack: LiveStack
    nginx: Nginx
    cert: Path

    def client(self) -> httpx.Client:
        """A client of nginx from CLIENT_ADDRESS, trusting the test's certificate."""
        return httpx.Client(
            base_url=self.nginx.url,
            transport=httpx.HTTPTransport(
                verify=ssl.create_default_context(cafile=str(self.cert)),
                local_address=CLIENT_ADDRESS,
            ),
            timeout=httpx.Timeout(30, read=120),
        )

    @property
    def calls_path(self) -> str:
        return f"/api/v2/telephony/calls/{self.stack.channel_key}"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        unavailable("nginx is missing (apt-get install nginx)")
    root = tmp_path_factory.mktemp("nginx")
    cert, key = make_certificate(root)
    https_port = free_port()
    stack = LiveStack(
        tmp_path_factory.mktemp("stack"),
        {
            "VATS_TRUSTED_PROXIES": "127.0.0.1",
            # Left at http on purpose: links in replies to requests that reached nginx over
            # TLS must say https all the same.
            "VATS_PUBLIC_URL": f"http://127.0.0.1:{https_port}",
        },
    )
    nginx: Nginx | None = None
    try:
        stack.start_core()
        stack.start_gateway()
        upstream = f"127.0.0.1:{stack.http_port}"
        nginx = start_nginx(binary, root, cert, key, upstream, https_port)
        yield Deployment(stack, nginx, cert)
    finally:
        if nginx is not None:
            stop_nginx(nginx)
        stack.stop()


def access_lines(stack: LiveStack, request_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in stack.log("gateway").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("request_id") == request_id and entry.get("message") == "request":
                lines.append(entry)
    return lines


def logged_client(stack: LiveStack, request_id: str) -> str:
    """The client address of the gateway's access log line of that request."""
    deadline = time.monotonic() + ARRIVES_WITHIN
    while not (lines := access_lines(stack, request_id)):
        assert time.monotonic() < deadline, f"no access log line for {request_id}"
        time.sleep(0.05)
    return str(lines[0]["client"])


def field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


CREATE = (("action", "create_call"), ("direction", "incoming"), ("phone", "+74951234567"))


def wav_header(data_bytes: int, rate: int = 8000) -> bytes:
    """A 16-bit mono PCM WAV header announcing `data_bytes` of samples."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def recording_upload(size: int) -> tuple[int, Iterator[bytes]]:
    """A create_call form with a `size`-byte WAV recording (silence): its length and its
    bytes, made as they are sent."""
    head = (
        b"".join(field(name, value) for name, value in CREATE)
        + (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="audio_record"; filename="call.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
    )
    header = wav_header(size - 44)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head + header
        silence = bytes(1024 * 1024)
        left = size - len(header)
        while left > 0:
            piece = silence if left >= len(silence) else silence[:left]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + size + len(tail), chunks()


def small_recording_form() -> dict[str, Any]:
    return {
        "data": dict(CREATE),
        "files": {"audio_record": ("call.wav", wav_header(8000) + bytes(8000), "audio/wav")},
    }


def memory_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for process {pid}")


class SpoolWatch(threading.Thread):
    """Notes every file a process opens under `temp_dirs` while it runs. nginx unlinks its
    temporary files at once, so only the open descriptors tell that it wrote one."""

    def __init__(self, pid: int, temp_dirs: list[Path]) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.prefixes = tuple(f"{d}/" for d in temp_dirs)
        self.seen: set[str] = set()
        self.looks = 0
        self._done = threading.Event()

    def run(self) -> None:
        fds = Path(f"/proc/{self.pid}/fd")
        while not self._done.wait(0.02):
            for fd in fds.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(self.prefixes):
                        self.seen.add(target)
            self.looks += 1

    def __enter__(self) -> SpoolWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(5)


def drain(reader: SSEReader) -> None:
    """Skips the snapshot of cards left by earlier tests."""
    while not reader.nothing_more(0.3):
        while not reader.events.empty():
            reader.events.get_nowait()


STREAM = "/api/v2/telephony/cards/stream"


def test_create_call_over_https(deployment: Deployment) -> None:
    with deployment.client() as client:
        response = client.post(deployment.calls_path, data=dict(CREATE))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["call_id"] > 0
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_pages_and_health_pass_and_plain_http_is_sent_to_https(deployment: Deployment) -> None:
    with deployment.client() as client:
        for path, kind in (
            ("/agent", "text/html"),
            ("/static/agent.js", "javascript"),
            ("/openapi.json", "application/json"),
            ("/healthz", "application/json"),
            ("/readyz", "application/json"),
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert kind in response.headers["content-type"], path
        history = client.get(
            "/api/v2/telephony/history", headers={"Authorization": "Bearer demo-admin"}
        )
        assert history.status_code == 200, history.text
        # Prometheus scrapes the gateway itself; the public name does not show its metrics.
        assert client.get("/metrics").status_code == 404
    plain = httpx.get(f"http://127.0.0.1:{deployment.nginx.http_port}/agent", timeout=10)
    assert plain.status_code == 301
    assert plain.headers["location"].startswith("https://127.0.0.1")


def test_the_board_stream_is_not_buffered_by_nginx(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(deployment.cert))
    board = SSEReader(
        deployment.nginx.url + "/api/v2/telephony/board/stream",
        {"Authorization": "Bearer demo-supervisor"},
    )
    try:
        assert board.status == 200
        assert board.next(ARRIVES_WITHIN).event == "board"
        with deployment.client() as client:
            response = client.post(deployment.calls_path, json={**dict(CREATE), "group_ids": [10]})
        assert response.status_code == 200, response.text
        call_id = response.json()["data"]["call_id"]
        # A buffering proxy would hold the small board event back for good.
        event = board.next(ARRIVES_WITHIN)
        while call_id not in [call["call_id"] for call in event.json["calls"]]:
            event = board.next(ARRIVES_WITHIN)
        assert event.event == "board"
    finally:
        board.close()


def test_card_reaches_a_stream_through_nginx_as_it_does_directly(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(deployment.cert))
    headers = {"Authorization": "Bearer demo-anna"}
    direct = SSEReader(deployment.stack.http_url + STREAM, headers)
    proxied = SSEReader(deployment.nginx.url + STREAM, headers)
    try:
        assert (direct.status, proxied.status) == (200, 200)
        assert proxied.response_headers is not None
        assert proxied.response_headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in proxied.response_headers
        drain(direct)
        drain(proxied)
        posted = time.monotonic()
        with deployment.client() as client:
            response = client.post(deployment.calls_path, json={**dict(CREATE), "group_ids": [10]})
        assert response.status_code == 200, response.text
        call_id = response.json()["data"]["call_id"]
        arrivals = {}
        for name, reader in (("direct", direct), ("through nginx", proxied)):
            event = reader.next(ARRIVES_WITHIN)
            arrivals[name] = time.monotonic() - posted
            assert event.event == "show" and event.json["call_id"] == call_id, name
        # Both within the one bound: a buffering proxy holds a small event back for good.
        assert all(seconds < ARRIVES_WITHIN for seconds in arrivals.values()), arrivals
        # Keepalive comments (every second here) flow through as they are written.
        before = len(proxied.comments)
        deadline = time.monotonic() + ARRIVES_WITHIN
        while len(proxied.comments) == before:
            assert time.monotonic() < deadline, "no keepalive came through nginx"
            time.sleep(0.05)
    finally:
        direct.close()
        proxied.close()
    # nginx passes the hang-up on: the gateway ends both streams.
    deadline = time.monotonic() + ARRIVES_WITHIN
    while open_streams(deployment.stack) != 0:
        assert time.monotonic() < deadline, "a card stream outlived its client"
        time.sleep(0.1)


def open_streams(stack: LiveStack) -> float:
    metrics = httpx.get(f"{stack.http_url}/metrics", timeout=10).text
    (line,) = [m for m in metrics.splitlines() if m.startswith("vats_gateway_card_streams ")]
    return float(line.split()[1])


def test_150_mb_recording_streams_through_with_flat_memory(deployment: Deployment) -> None:
    stack, nginx = deployment.stack, deployment.nginx
    assert stack.gateway is not None
    watched = {"gateway": stack.gateway.pid, "nginx": nginx.worker_pid()}
    peak_before = {name: memory_kb(pid, "VmHWM") for name, pid in watched.items()}
    length, body = recording_upload(RECORDING_BYTES)
    spool = SpoolWatch(watched["nginx"], [nginx.body_temp, nginx.root / "proxy"])
    with spool, deployment.client() as client:
        response = client.post(
            deployment.calls_path,
            content=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(length),
            },
        )
    assert response.status_code == 200, response.text
    growth_mb = {
        name: (memory_kb(pid, "VmHWM") - peak_before[name]) / 1024 for name, pid in watched.items()
    }
    assert all(mb < FLAT_MEMORY / 2**20 for mb in growth_mb.values()), growth_mb
    assert spool.looks > 0 and spool.seen == set()
    assert list(nginx.body_temp.iterdir()) == []
    assert "buffered to a temporary file" not in nginx.error_log

    link = response.json()["data"]["audio_record"]
    assert link.startswith(f"{nginx.url}/api/v2/telephony/records/"), link
    with deployment.client() as client:
        head = client.get(link, headers={"Range": "bytes=0-11"})
        assert head.status_code == 206, head.text
        assert head.content == b"RIFF" + struct.pack("<I", RECORDING_BYTES - 8) + b"WAVE"
        assert head.headers["content-range"] == f"bytes 0-11/{RECORDING_BYTES}"
        forged = client.get(link.replace("signature=", "signature=0"))
        assert forged.status_code == 403


def test_gateway_logs_the_client_behind_nginx_not_nginx(deployment: Deployment) -> None:
    stack = deployment.stack
    with deployment.client() as client:
        plain, spoofed = uuid.uuid4().hex, uuid.uuid4().hex
        assert client.get("/healthz", headers={"X-Request-ID": plain}).status_code == 200
        # nginx appends the address it saw: the gateway takes the right-most one it does
        # not trust, never what the client wrote in front of it.
        response = client.get(
            "/healthz", headers={"X-Request-ID": spoofed, "X-Forwarded-For": "203.0.113.7"}
        )
        assert response.status_code == 200
    assert logged_client(stack, plain) == CLIENT_ADDRESS
    assert logged_client(stack, spoofed) == CLIENT_ADDRESS


def post_recording_directly(
    url: str, request_id: str, local_address: str, forwarded: dict[str, str]
) -> str:
    """Posts a call with a recording straight to a gateway: the reply's recording link."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=local_address)) as client:
        response = client.post(
            url,
            headers={"X-Request-ID": request_id, **forwarded},
            timeout=30,
            **small_recording_form(),
        )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["audio_record"])


FORWARDED = {"X-Forwarded-For": "198.51.100.4, 203.0.113.9", "X-Forwarded-Proto": "https"}


def test_gateway_believes_forwarded_headers_from_a_trusted_proxy_only(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    trusted, untrusted = uuid.uuid4().hex, uuid.uuid4().hex
    link = post_recording_directly(stack.calls_url, trusted, "127.0.0.1", FORWARDED)
    assert logged_client(stack, trusted) == "203.0.113.9"
    assert link.startswith("https://")
    link = post_recording_directly(stack.calls_url, untrusted, CLIENT_ADDRESS, FORWARDED)
    assert logged_client(stack, untrusted) == CLIENT_ADDRESS
    assert link.startswith("http://")


def test_gateway_trusts_no_proxy_unless_told(deployment: Deployment, tmp_path: Path) -> None:
    """uvicorn alone believes 127.0.0.1; the gateway without VATS_TRUSTED_PROXIES believes
    nobody."""
    stack = deployment.stack
    port = free_port()
    env = {k: v for k, v in stack.env.items() if k != "VATS_TRUSTED_PROXIES"}
    env["VATS_HTTP_ADDR"] = f"127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", gateway)
        request_id = uuid.uuid4().hex
        calls_url = f"http://127.0.0.1:{port}/api/v2/telephony/calls/{stack.channel_key}"
        link = post_recording_directly(calls_url, request_id, "127.0.0.1", FORWARDED)
        assert link.startswith("http://")
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    clients = [e["client"] for e in lines if e.get("request_id") == request_id and "client" in e]
    assert clients == ["127.0.0.1"]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        assert process.poll() is None, "the gateway exited"
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)
