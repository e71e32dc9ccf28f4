"""Replicas benchmark: throughput with 1, 2 and 3 replicas, and a rolling restart under steady load.

Replicas are real sidecars (processes on 127.0.0.2-127.0.0.4) sharing one real PostgreSQL runs store
(scripts/pg-test-server.sh); the load is the Python client over their ``ipv4:`` round-robin target, every call
with a run_id, from CONCURRENCY threads. Run from the repository root after `npm run build`:

    python-shims/.venv/bin/python deploy/bench_replicas.py        # npm run bench:replicas
    BENCH_SECONDS=10 ... (per throughput point; default 20)

1. Throughput: for 1, 2 and 3 replicas, tokens scored per second over a fixed time, with each replica's
   default engine (one worker, intra-op threads = the machine's cores). On one machine the replicas share its
   cores, so this measures the balancing's overhead and its spread, not added capacity; the report says so.
2. Rolling restart: three replicas under steady load; each in turn gets SIGTERM (drains), is started again
   on its address and must be ready before the next. Reports failed requests and whether the store holds
   exactly the acknowledged sequences (GetRun on every replica).

Writes a Markdown table to stdout and bench-results/replicas.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "python-shims"))
sys.path.insert(0, os.path.join(REPO, "python-shims", "tests"))

from mechreward_client import RewardClient  # noqa: E402
from support import start_sidecar  # noqa: E402

PACK = "smollm2-arith"
PACKS = os.path.join(REPO, "packs")
D_MODEL = 576
SEQ_TOKENS = 128
BATCH = 4
PROMPT = 16
CONCURRENCY = 8
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))


def free_port_on(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Load:
    """CONCURRENCY threads scoring through one client until stopped; counts OK and failed calls."""

    def __init__(self, target: str, run_id: str, concurrency: int = CONCURRENCY) -> None:
        self.client = RewardClient(target, timeout=60)
        self.run_id = run_id
        self.ok = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(concurrency)]

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        batch = [rng.normal(size=(SEQ_TOKENS, D_MODEL)).astype(np.float32) for _ in range(BATCH)]
        while not self.stop.is_set():
            try:
                self.client.score(PACK, batch, score_from=PROMPT, run_id=self.run_id)
                with self.lock:
                    self.ok += 1
            except Exception as error:  # noqa: BLE001 - every failure is reported
                with self.lock:
                    self.failed.append(repr(error))

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        self.client.close()


def get_runs(ports: dict[str, int], run_id: str) -> dict[str, int]:
    out = {}
    for host, port in ports.items():
        with RewardClient(f"{host}:{port}", timeout=30) as one:
            out[host] = one.get_run(run_id).sequences
    return out


def main() -> int:
    started = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg-test-server.sh"), "start"],
                             check=True, capture_output=True, text=True).stdout
    pg = {k: v.strip("'\"") for k, v in re.findall(r"^(MECHREWARD_PG_\w+)=(.*)$", started, re.M)}
    lines = [f"Replicas benchmark ({os.cpu_count()} cores, shared machine; {BATCH} x {SEQ_TOKENS}-token sequences "
             f"per call, {PACK}, concurrency {CONCURRENCY}, run_id on every call, one PostgreSQL)", ""]
    replicas: list = []
    try:
        ports = {h: free_port_on(h) for h in HOSTS}

        def start(host: str):
            return start_sidecar(PACKS, "--host", host, "--runs-db", pg["MECHREWARD_PG_URL"], grpc_port=ports[host])

        lines += ["| replicas | calls/s | tok/s | vs 1 replica | failed |", "|---|---|---|---|---|"]
        base = None
        for n in (1, 2, 3):
            replicas = [start(h) for h in HOSTS[:n]]
            target = "ipv4:" + ",".join(f"{h}:{ports[h]}" for h in HOSTS[:n])
            load = Load(target, f"bench-{n}").start()
            time.sleep(2.0)  # warm: connections up, first batches through
            ok0, t0 = load.ok, time.monotonic()
            time.sleep(SECONDS)
            calls = (load.ok - ok0) / (time.monotonic() - t0)
            load.finish()
            tok = calls * BATCH * SEQ_TOKENS
            base = base or tok
            lines.append(f"| {n} | {calls:.1f} | {tok:,.0f} | {tok / base:.2f}x | {len(load.failed)} |")
            for r in replicas:
                r.stop()
            replicas = []

        # Rolling restart of every replica under steady load.
        replicas = {h: start(h) for h in HOSTS}
        target = "ipv4:" + ",".join(f"{h}:{ports[h]}" for h in HOSTS)
        load = Load(target, "rolling-restart", concurrency=4).start()
        time.sleep(2.0)
        t0 = time.monotonic()
        codes = []
        for host in HOSTS:
            codes.append(replicas[host].stop())  # SIGTERM: drain
            replicas[host] = start(host)  # ready before the next one goes
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        load.finish()
        acknowledged = load.ok * BATCH
        seen = get_runs(ports, "rolling-restart")
        lost = acknowledged - min(seen.values())
        lines += ["", f"Rolling restart of all 3 replicas under steady load (concurrency 4, {elapsed:.1f} s): "
                  f"{load.ok} calls OK, {len(load.failed)} failed; drain exit codes {codes}; "
                  f"acknowledged {acknowledged} sequences, GetRun per replica {sorted(set(seen.values()))}, "
                  f"lost {lost}, counted twice {max(seen.values()) - acknowledged}."]
        if load.failed:
            lines.append(f"First failures: {load.failed[:3]}")
        replicas = list(replicas.values())
    finally:
        for r in replicas:
            r.stop()
        subprocess.run(["bash", os.path.join(REPO, "scripts", "pg-test-server.sh"), "stop", pg["MECHREWARD_PG_DIR"]], check=False)
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(os.path.join(REPO, "bench-results"), exist_ok=True)
    with open(os.path.join(REPO, "bench-results", "replicas.md"), "w") as f:
        f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
