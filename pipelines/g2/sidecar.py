"""The reward sidecar for the pack runs: either one already serving (--target) or one started here.

A started sidecar is the real `mechreward serve` command on loopback with ports chosen by the OS, started and
waited for by the client package's launcher (`mechreward_client.launch`).
"""

from __future__ import annotations

import shlex

from mechreward_client.launch import LaunchedSidecar, SidecarStartError, launch_sidecar

READY_TIMEOUT_S = 180  # loading an SAE pack on a loaded 2-core machine can take a while


class Sidecar:
    """``mechreward serve`` from a command line, on ports the OS chooses, as a context manager."""

    def __init__(self, command: str, cwd: str):
        self.command = shlex.split(command) + [
            "--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1", "--runs-db", "",
        ]
        self.cwd = cwd
        self.launched: LaunchedSidecar | None = None
        self.target = ""
        self.http = ""  # http://127.0.0.1:PORT once ready

    @property
    def lines(self) -> list[str]:
        """The server's log lines so far (JSON, one a line)."""
        return list(self.launched.log_lines) if self.launched else []

    def __enter__(self) -> "Sidecar":
        try:
            self.launched = launch_sidecar(self.command, cwd=self.cwd, ready_timeout=READY_TIMEOUT_S)
        except SidecarStartError as e:
            raise SystemExit(str(e)) from None
        self.target, self.http = self.launched.target, self.launched.http
        return self

    def __exit__(self, *exc) -> None:
        if self.launched:
            self.launched.stop()


class Existing:
    """A sidecar someone else runs: nothing to start or stop."""

    def __init__(self, target: str):
        self.target = target

    def __enter__(self) -> "Existing":
        return self

    def __exit__(self, *exc) -> None:
        pass
