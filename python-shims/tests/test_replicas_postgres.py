"""The whole: three replicas on one PostgreSQL runs store, a trainer loop over their round-robin target.

Three real sidecars (processes on 127.0.0.2, 127.0.0.3 and 127.0.0.4, each with its own port) share one
real PostgreSQL (scripts/pg-test-server.sh). A trainer-like loop scores a batch per step with a run_id
through ``ipv4:...`` with the client's defaults. Mid-run one replica gets SIGKILL and another SIGTERM; both
are started again on their own address and take calls again. The result: no step fails, every reward equals
the float64 reference, the store holds every acknowledged sequence (at most the batches in flight at the
SIGKILL counted twice: persisted, then the reply lost and the call retried), and GetRun on each replica shows
the same whole run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

from mechreward_client import RewardClient

from support import REPO, random_topk_sae, reference_token_rewards, start_sidecar, write_pack

D_MODEL = 32
FEATURES = [(3, 1.0), (11, -0.5), (40, 0.25)]
PACK = "replica-pg-pack"
STEPS = 60
BATCH = 4
TOKENS = 12
PROMPT = 3
RUN_ID = "trainer-run-three-replicas"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
KILL_AT_STEP = 12
TERM_AT_STEP = 30
PG_SERVER = os.path.join(REPO, "scripts", "pg-test-server.sh")


@pytest.fixture(scope="module")
def postgres_url():
    out = subprocess.run(["bash", PG_SERVER, "start"], check=True, capture_output=True, text=True).stdout
    env = dict(re.findall(r"^(MECHREWARD_PG_\w+)=(.*)$", out, re.M))
    yield env["MECHREWARD_PG_URL"].strip("'\"")
    subprocess.run(["bash", PG_SERVER, "stop", env["MECHREWARD_PG_DIR"].strip("'\"")], check=False)


def free_port_on(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def score_calls(host: str, http_port: int) -> int:
    text = urllib.request.urlopen(f"http://{host}:{http_port}/metrics", timeout=10).read().decode()
    match = re.search(r'^mechreward_requests_total\{method="Score",code="OK"\} (\d+)', text, re.M)
    return int(match.group(1)) if match else 0


def test_three_replicas_one_store_sigkill_and_sigterm_mid_run_lose_nothing(tmp_path, postgres_url):
    packs = str(tmp_path / "packs")
    sae = random_topk_sae(D_MODEL, 128, 8, seed=21)
    write_pack(os.path.join(packs, PACK), sae, layer=1, features=FEATURES)
    ports = {h: free_port_on(h) for h in HOSTS}

    def start(host: str):
        return start_sidecar(packs, "--host", host, "--runs-db", postgres_url, grpc_port=ports[host])

    replicas = {h: start(h) for h in HOSTS}
    target = "ipv4:" + ",".join(f"{h}:{ports[h]}" for h in HOSTS)
    # A trainer's client: the defaults, plus enough retries to span every replica restarting at once.
    client = RewardClient(target, timeout=20, retries=10)
    rng = np.random.default_rng(0)
    batches = [[rng.normal(size=(TOKENS, D_MODEL)).astype(np.float32) for _ in range(BATCH)] for _ in range(STEPS)]
    acknowledged = 0
    events: list[str] = []
    restarted: dict[str, object] = {}

    def kill_and_restart(host: str) -> None:
        replicas[host].process.send_signal(signal.SIGKILL)
        replicas[host].process.wait()
        events.append(f"SIGKILL {host}")
        restarted[host] = start(host)

    def terminate_and_restart(host: str) -> None:
        code = replicas[host].stop()  # SIGTERM: drain, exit 0
        events.append(f"SIGTERM {host} -> {code}")
        restarted[host] = start(host)

    chaos: list[threading.Thread] = []
    try:
        for step, batch in enumerate(batches):
            if step == KILL_AT_STEP:
                chaos.append(threading.Thread(target=kill_and_restart, args=(HOSTS[0],)))
                chaos[-1].start()
            if step == TERM_AT_STEP:
                chaos.append(threading.Thread(target=terminate_and_restart, args=(HOSTS[1],)))
                chaos[-1].start()
            results = client.score(PACK, batch, score_from=PROMPT, run_id=RUN_ID)
            acknowledged += BATCH
            for x, r in zip(batch, results):
                want = reference_token_rewards(x, sae, FEATURES)
                want[:PROMPT] = 0.0
                np.testing.assert_allclose(r.token_rewards, want, rtol=1e-4, atol=1e-4)
            if step >= TERM_AT_STEP and len(restarted) < 2:
                time.sleep(0.05)  # keep the run going while the two replicas come back
        for thread in chaos:
            thread.join(120)
        assert sorted(restarted) == sorted(HOSTS[:2]), events
        replicas.update(restarted)
        assert f"SIGTERM {HOSTS[1]} -> 0" in events, events

        # Both restarted replicas take calls again through the same target.
        extra = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(score_calls(h, replicas[h].http_port) > 0 for h in HOSTS[:2]):
            client.score(PACK, batches[extra % STEPS], score_from=PROMPT, run_id=RUN_ID)
            extra += 1
        acknowledged += extra * BATCH
        assert all(score_calls(h, replicas[h].http_port) > 0 for h in HOSTS[:2]), "a restarted replica got no calls"

        # The store holds every acknowledged sequence; each replica reads the same whole run.
        seen = {}
        for host in HOSTS:
            with RewardClient(f"{host}:{ports[host]}", timeout=20) as one:
                seen[host] = one.get_run(RUN_ID).sequences
        print(f"replicas: {events}; acknowledged {acknowledged} sequences; GetRun per replica {seen}; "
              f"Score calls per live replica {[score_calls(h, replicas[h].http_port) for h in HOSTS]}")
        assert len(set(seen.values())) == 1, seen
        assert acknowledged <= seen[HOSTS[0]] <= acknowledged + BATCH, (seen, acknowledged, events)
    finally:
        client.close()
        for thread in chaos:
            thread.join(120)
        for sidecar in {**replicas, **restarted}.values():
            sidecar.stop()
