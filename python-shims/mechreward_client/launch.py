"""Start ``mechreward serve`` as a child process and wait until it serves.

For a training script that owns its sidecar, and for this project's tests and pipelines::

    from mechreward_client.launch import launch_sidecar

    with launch_sidecar(["npx", "mechreward", "serve", "--grpc-port", "0", "--http-port", "0"]) as sidecar:
        reward = MechReward("smollm2-arith", model=policy, tokenizer=tokenizer, target=sidecar.target)

Readiness is the server's own ``mechreward ready`` JSON log line on stderr, which it writes once every pack is
loaded and warmed and which carries the ports it bound, so ``--grpc-port 0`` / ``--http-port 0`` (ports the OS
chooses) work and nothing polls. The log keeps being read after that, so a chatty server never blocks on a full
pipe; the last lines are kept for error messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

READY_LOG_MESSAGE = "mechreward ready"
LOG_LINES_KEPT = 2000


class SidecarStartError(RuntimeError):
    """The sidecar exited, or did not report ready in time; the message ends with its last log lines."""


@dataclass
class LaunchedSidecar:
    """A running ``mechreward serve`` child process and the ports it reported (0 before it is ready)."""

    process: subprocess.Popen
    grpc_port: int
    http_port: int
    log_lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    host: str = "127.0.0.1"

    @property
    def target(self) -> str:
        """The gRPC address for ``RewardClient`` and the shims."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http(self) -> str:
        """The HTTP base URL (``/v1/score``, ``/v1/runs``, the ``/monitor`` page)."""
        return f"http://{self.host}:{self.http_port}"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the server drains in-flight requests and exits 0), SIGKILL after ``timeout``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LaunchedSidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_sidecar(
    command: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 180.0,
    wait_ready: bool = True,
) -> LaunchedSidecar:
    """Run ``command`` (a ``mechreward serve`` command line) and return once it reports ready.

    ``env`` is added to this process's environment. With ``wait_ready=False`` it returns at once (ports 0),
    for callers that watch start-up themselves. Raises ``SidecarStartError`` if the process exits first or
    ``ready_timeout`` seconds pass (the process is killed then).
    """
    process = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    sidecar = LaunchedSidecar(process, 0, 0)
    ready: dict = {}
    ready_event = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            sidecar.log_lines.append(line.rstrip("\n"))
            if ready_event.is_set():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("msg") == READY_LOG_MESSAGE:
                ready.update(record)
                ready_event.set()

    threading.Thread(target=drain, name="mechreward-sidecar-log", daemon=True).start()
    if not wait_ready:
        return sidecar
    deadline = time.monotonic() + ready_timeout
    while not ready_event.wait(0.05):
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            process.kill()
            process.wait()
            why = f"exited with code {process.returncode}" if exited else f"was not ready after {ready_timeout:g} s"
            raise SidecarStartError(f"sidecar {why} ({' '.join(command)}); its last log lines:\n" + "\n".join(list(sidecar.log_lines)[-20:]))
    sidecar.grpc_port = int(ready["grpcPort"])
    sidecar.http_port = int(ready["httpPort"])
    return sidecar
