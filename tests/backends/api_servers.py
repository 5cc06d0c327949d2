"""Servers for the openai_api tests, all on 127.0.0.1: llama-cpp-python's real one, a scripted fake, a 429 proxy."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

SERVER_START_TIMEOUT_S = 60.0


class TickingClock:
    """A clock that moves one second each time it is read, so every timing is positive and exact."""

    def __init__(self) -> None:
        self.ticks = 0.0

    def now(self) -> float:
        self.ticks += 1.0
        return self.ticks


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_cpp_server(gguf: Path, log_path: Path) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on a free port; yields its base URL, stops it at the end."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_threads", "1", "--n_ctx", "1024"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2.0, trust_env=False).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S} s")
                time.sleep(0.2)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def chunk(content: str | None = None, finish: str | None = None, usage: Mapping[str, int] | None = None) -> Any:
    """One chat-completion stream chunk."""
    data: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    data["choices"] = [] if content is None and finish is None else [
        {"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}
    ]  # fmt: skip
    if usage is not None:
        data["usage"] = dict(usage)
    return data


def sse(*events: Any, done: bool = True) -> bytes:
    """A server-sent event stream of JSON events (strings are sent as they are), ending in ``[DONE]``."""
    lines = [f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n" for event in events]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer; ``declared_length`` larger than the body makes the connection close mid-body."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/event-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    declared_length: int | None = None


@dataclass
class Seen:
    """One request a test server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: _ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), json.loads(raw) if raw else None)
        self.server.seen.append(seen)
        self.server.respond(self, seen, raw)

    do_GET = _serve  # noqa: N815 (the names http.server looks up)
    do_POST = _serve  # noqa: N815


def send_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """Write ``reply`` on ``handler``'s connection."""
    handler.send_response(reply.status)
    handler.send_header("Content-Type", reply.content_type)
    handler.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(reply.body)
    handler.wfile.flush()
    if reply.declared_length:
        handler.close_connection = True


class _ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler, Seen, bytes], None]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.respond = respond


@contextmanager
def serving(respond: Callable[[BaseHTTPRequestHandler, Seen, bytes], None]) -> Iterator[tuple[str, list[Seen]]]:
    """Run a test server in a thread; yields its ``/v1`` base URL and the list of requests it saw."""
    server = _ScriptedServer(respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def fake_server(*replies: Reply) -> Iterator[tuple[str, list[Seen]]]:
    """A server that answers each request with the next scripted reply (then 500 "script exhausted")."""
    queue = list(replies)

    def respond(handler: BaseHTTPRequestHandler, seen: Seen, raw: bytes) -> None:
        send_reply(handler, queue.pop(0) if queue else Reply(500, b'{"error": "script exhausted"}', "application/json"))

    with serving(respond) as served:
        yield served


@contextmanager
def throttling_proxy(upstream: str) -> Iterator[tuple[str, list[Seen]]]:
    """A proxy that answers the first request 429 with ``Retry-After: 0`` and forwards the rest to ``upstream``."""
    target = httpx.URL(upstream)

    def respond(handler: BaseHTTPRequestHandler, seen: Seen, raw: bytes) -> None:
        if len(handler.server.seen) == 1:  # type: ignore[attr-defined]
            send_reply(handler, Reply(429, b'{"error": "slow down"}', "application/json", {"Retry-After": "0"}))
            return
        connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
        try:
            connection.request(seen.method, seen.path, raw or None, {"Content-Type": "application/json"})
            upstream_reply = connection.getresponse()
            body = upstream_reply.read()
            content_type = upstream_reply.getheader("Content-Type", "application/json")
            send_reply(handler, Reply(upstream_reply.status, body, content_type))
        finally:
            connection.close()

    with serving(respond) as served:
        yield served
