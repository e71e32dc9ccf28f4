"""A trainer-like loop survives a sidecar killed with SIGKILL and restarted on the same port.

The loop scores a batch per step with a run_id, exactly as the TRL adapter does. Mid-run another thread
SIGKILLs the real sidecar and starts a new one on the same port and runs database. The client's retries carry
the loop across the gap (no step fails, every reward equals the one from before the kill), and the runs
database lost nothing acknowledged: the run's sequence count covers every acknowledged step (at most the one
batch in flight at the kill may be counted twice, persisted before its reply was lost and then retried).
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np

from mechreward_client import RewardClient

from support import free_port, random_topk_sae, reference_token_rewards, start_sidecar, write_pack

D_MODEL = 32
FEATURES = [(3, 1.0), (11, -0.5), (40, 0.25)]
STEPS = 24
KILL_AFTER_STEP = 8
BATCH = 4
TOKENS = 12
PROMPT = 3
RUN_ID = "trainer-run-sigkill"


def test_sigkill_mid_run_trainer_loop_carries_on_and_runs_db_keeps_every_acknowledged_count(tmp_path):
    packs = tmp_path / "packs"
    sae = random_topk_sae(D_MODEL, 128, 8, seed=5)
    write_pack(str(packs / "restart-pack"), sae, layer=1, features=FEATURES)
    runs_db = str(tmp_path / "runs.sqlite")
    port = free_port()
    rng = np.random.default_rng(0)
    batches = [[rng.normal(size=(TOKENS, D_MODEL)).astype(np.float32) for _ in range(BATCH)] for _ in range(STEPS)]

    sidecars = [start_sidecar(str(packs), "--runs-db", runs_db, grpc_port=port)]
    # Enough retries to span a restart on a busy machine: backoff is capped at 2 s per attempt.
    client = RewardClient(sidecars[0].target, timeout=20, retries=30)
    acknowledged = 0
    step_done = threading.Event()
    killed = threading.Event()
    restarted = threading.Event()

    def kill_and_restart() -> None:
        step_done.wait()
        sidecars[0].process.send_signal(signal.SIGKILL)
        sidecars[0].process.wait()
        killed.set()
        sidecars.append(start_sidecar(str(packs), "--runs-db", runs_db, grpc_port=port))
        restarted.set()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        for step, batch in enumerate(batches):
            results = client.score("restart-pack", batch, score_from=[PROMPT] * BATCH, run_id=RUN_ID)
            acknowledged += BATCH
            for x, r in zip(batch, results):
                want = np.zeros(TOKENS)
                want[PROMPT:] = reference_token_rewards(x[PROMPT:], sae, FEATURES)
                np.testing.assert_allclose(r.token_rewards, want, rtol=1e-4, atol=1e-4)
            if step == KILL_AFTER_STEP:
                # The next step is sent to a dead sidecar: it must retry until the new one is ready.
                step_done.set()
                killed.wait(timeout=60)
        killer.join(timeout=120)
        assert restarted.is_set(), "the sidecar was not restarted"
        assert sidecars[0].process.returncode == -signal.SIGKILL
        assert len(sidecars) == 2
        run = client.get_run(RUN_ID)
        assert acknowledged == STEPS * BATCH
        assert acknowledged <= run.sequences <= acknowledged + BATCH, (run.sequences, acknowledged)
        assert os.path.getsize(runs_db) > 0
    finally:
        client.close()
        for s in sidecars:
            s.stop()
