"""The reward sidecar for the pack runs: either one already serving (--target) or one started here.

A started sidecar is the real `mechreward serve` command on loopback with ports chosen by the OS; it is told
to log JSON to stderr and we wait for its `mechreward ready` line, which carries the bound gRPC port.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time

READY_TIMEOUT_S = 180  # loading an SAE pack on a loaded 2-core machine can take a while


class Sidecar:
    def __init__(self, command: str, cwd: str):
        self.command = shlex.split(command) + [
            "--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1", "--runs-db", "",
        ]
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.target = ""
        self.http = ""  # http://127.0.0.1:PORT once ready

    def __enter__(self) -> "Sidecar":
        self.process = subprocess.Popen(self.command, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        ready: dict = {}
        event = threading.Event()

        def drain() -> None:  # keep reading so the server never blocks on a full pipe
            for line in self.process.stderr:
                self.lines.append(line.rstrip("\n"))
                if not event.is_set():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("msg") == "mechreward ready":
                        ready.update(record)
                        event.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not event.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise SystemExit(f"sidecar did not become ready ({' '.join(self.command)}):\n"
                                 + "\n".join(self.lines[-20:]))
        self.target = f"127.0.0.1:{int(ready['grpcPort'])}"
        self.http = f"http://127.0.0.1:{int(ready['httpPort'])}"
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Existing:
    """A sidecar someone else runs: nothing to start or stop."""

    def __init__(self, target: str):
        self.target = target

    def __enter__(self) -> "Existing":
        return self

    def __exit__(self, *exc) -> None:
        pass
