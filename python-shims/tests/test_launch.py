"""mechreward_client.launch: the real sidecar started from Python, ready from its own log line; start-up
failures are errors that carry the server's words, and nothing is left running."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import pytest

from mechreward_client import RewardClient
from mechreward_client.launch import SidecarStartError, launch_sidecar
from support import REPO, SIDECAR_BIN, ensure_sidecar_built


def test_launched_sidecar_reports_its_os_chosen_ports_and_drains_on_exit():
    ensure_sidecar_built()
    command = ["node", SIDECAR_BIN, "serve", "--packs", os.path.join(REPO, "examples", "packs"), "--grpc-port", "0", "--http-port", "0",
               "--allow-unvalidated", "--runs-db", ""]
    with launch_sidecar(command, cwd=REPO) as sidecar:
        assert sidecar.grpc_port > 0 and sidecar.http_port > 0 and sidecar.grpc_port != sidecar.http_port
        packs = RewardClient(sidecar.target).list_packs()
        assert packs, "the gRPC port it reported serves"
        with urllib.request.urlopen(f"{sidecar.http}/readyz", timeout=10) as r:
            assert r.status == 200
        assert any(json.loads(line).get("msg") == "mechreward ready" for line in sidecar.log_lines if line.startswith("{"))
    assert sidecar.process.returncode == 0, "SIGTERM drains and exits 0"


def test_a_sidecar_that_exits_during_start_up_raises_with_its_last_log_lines(tmp_path):
    ensure_sidecar_built()
    missing = tmp_path / "no-such-packs"
    with pytest.raises(SidecarStartError) as caught:
        launch_sidecar(["node", SIDECAR_BIN, "serve", "--packs", str(missing), "--grpc-port", "0", "--http-port", "0"], cwd=REPO)
    message = str(caught.value)
    assert "exited with code" in message and str(missing) in message, message


def test_a_process_that_never_reports_ready_is_killed_at_the_deadline():
    with pytest.raises(SidecarStartError, match="was not ready after 0.5 s"):
        launch_sidecar([sys.executable, "-c", "import sys, time; print('starting', file=sys.stderr, flush=True); time.sleep(600)"],
                       ready_timeout=0.5)
