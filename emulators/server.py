"""Run the emulator app in its own process and talk to its control routes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import httpx
import uvicorn


def serve(host: str, port: int, settings: dict[str, dict[str, Any]], announce=print) -> None:
    """Serve the app on host:port (0 = a free port) in this process until stopped."""
    from emulators.app import build_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)  # connections queue from now on, so clients may connect as soon as we announce
    url = f"http://{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        build_app(settings), log_level="warning", access_log=False, backlog=4096,
        timeout_graceful_shutdown=1, loop="auto", http="auto",
    )
    announce(f"emulators listening on {url}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


class Emulator:
    """`with Emulator({"cards": {"latency": 0.1}}) as emu:` starts the emulators in a child process.

    `emu.url` is the base URL of every API; `emu.stats(api)`, `emu.configure(api, **settings)` and
    `emu.reset()` use the control routes, so they read what the server really saw.
    """

    def __init__(self, settings: dict[str, dict[str, Any]] | None = None, port: int = 0, host: str = "127.0.0.1"):
        self.settings, self.port, self.host = settings or {}, port, host
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Emulator":
        command = [sys.executable, "-m", "emulators", "--host", self.host, "--port", str(self.port),
                   "--settings", json.dumps(self.settings)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        self._control = httpx.Client(base_url=self.url, timeout=30)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.url:
            self._control.close()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self, api: str, window: float | None = None) -> dict[str, Any]:
        params = {"window": window} if window else {}
        return self._control.get(f"/_emulator/{api}/stats", params=params).raise_for_status().json()

    def configure(self, api: str, **settings: Any) -> dict[str, Any]:
        return self._control.put(f"/_emulator/{api}/config", json=settings).raise_for_status().json()

    def reset(self) -> None:
        self._control.post("/_emulator/reset").raise_for_status()
