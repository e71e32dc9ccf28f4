"""The client on several replicas: one gRPC target, grpcio's round_robin, health-aware, transparent retries.

Real sidecars on 127.0.0.2-127.0.0.4 behind an ``ipv4:`` target. Every client here has ``retries=0``, so
any call that succeeds across a replica going away or refusing work succeeded through the channel's own
service config (mechreward_client/_channel.py), not through the client's retry loop.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest

from mechreward_client import RewardClient
from mechreward_client._channel import SERVICE, check_target

from support import free_port, random_topk_sae, reference_token_rewards, start_sidecar, write_pack

D_MODEL = 32
FEATURES = [(3, 1.0), (11, -0.5), (40, 0.25)]
PACK = "replica-pack"
TOKENS = 10
PROMPT = 2


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    sae = random_topk_sae(D_MODEL, 128, 8, seed=11)
    write_pack(str(root / "packs" / PACK), sae, layer=1, features=FEATURES)
    return str(root / "packs"), sae


def start_replica(packs_dir: str, host: str):
    # The later --host wins over support's 127.0.0.1.
    sidecar = start_sidecar(packs_dir, "--host", host)
    sidecar.host = host
    return sidecar


def metrics_of(sidecar) -> int:
    """Score calls this replica answered OK, from its own /metrics."""
    text = urllib.request.urlopen(f"http://{sidecar.host}:{sidecar.http_port}/metrics", timeout=10).read().decode()
    match = re.search(r'^mechreward_requests_total\{method="Score",code="OK"\} (\d+)', text, re.M)
    return int(match.group(1)) if match else 0


def ipv4_target(sidecars) -> str:
    return "ipv4:" + ",".join(f"{s.host}:{s.grpc_port}" for s in sidecars)


def expected(sae, x) -> np.ndarray:
    r = reference_token_rewards(x, sae, FEATURES)
    r[:PROMPT] = 0.0
    return r


def test_targets_are_checked_before_any_connection():
    assert check_target("dns:///mechreward.default.svc.cluster.local:50051")
    assert check_target("ipv4:10.0.0.1:50051,10.0.0.2:50051")
    with pytest.raises(ValueError, match="ipv4:10.0.0.1:50051,10.0.0.2:50051"):
        check_target("10.0.0.1:50051,10.0.0.2:50051")
    with pytest.raises(ValueError, match="target"):
        RewardClient("a b:1").list_packs()


def test_round_robin_spreads_calls_over_every_replica_and_a_draining_one_costs_no_call(pack):
    packs_dir, sae = pack
    replicas = [start_replica(packs_dir, f"127.0.0.{i}") for i in (2, 3, 4)]
    try:
        client = RewardClient(ipv4_target(replicas), timeout=20, retries=0)
        rng = np.random.default_rng(0)
        calls = 30
        for _ in range(calls):
            x = rng.normal(size=(TOKENS, D_MODEL)).astype(np.float32)
            [scored] = client.score(PACK, [x], score_from=PROMPT)
            np.testing.assert_allclose(scored.token_rewards, expected(sae, x), rtol=1e-4, atol=1e-4)
        counts = [metrics_of(r) for r in replicas]
        assert sum(counts) == calls
        # round_robin: every replica takes a share (exactly a third once all three are connected).
        assert all(c >= calls // 6 for c in counts), counts

        # SIGTERM one replica while a second thread keeps scoring: the drain (NOT_SERVING, GOAWAY) moves
        # every new call to the other two, and calls in the way are retried there by the channel.
        stop = threading.Event()
        failures: list[BaseException] = []
        done = [0]

        def keep_scoring() -> None:
            local = np.random.default_rng(1)
            while not stop.is_set():
                x = local.normal(size=(TOKENS, D_MODEL)).astype(np.float32)
                try:
                    [scored] = client.score(PACK, [x], score_from=PROMPT)
                    np.testing.assert_allclose(scored.token_rewards, expected(sae, x), rtol=1e-4, atol=1e-4)
                    done[0] += 1
                except BaseException as error:  # noqa: BLE001 - collected and asserted below
                    failures.append(error)

        worker = threading.Thread(target=keep_scoring)
        worker.start()
        time.sleep(1.0)
        before = done[0]
        assert replicas[0].stop() == 0, "the replica did not drain cleanly"
        time.sleep(1.0)
        stop.set()
        worker.join(60)
        assert not failures, failures[:3]
        assert done[0] > before, "no call finished after the SIGTERM"
        client.close()
    finally:
        for r in replicas:
            r.stop()


# --- a replica that is up but not serving -------------------------------------------------------------------
# The health protocol's responses by hand (grpc.health.v1.HealthCheckResponse{status}): field 1, varint.
_HEALTH = {"SERVING": b"\x08\x01", "NOT_SERVING": b"\x08\x02"}


class HeldReplica:
    """A gRPC server on 127.0.0.5 that answers grpc.health.v1 with a status the test sets, and refuses every
    Score with UNAVAILABLE (as a sidecar does while loading), counting them. It stands for a replica in a
    state a real sidecar passes through too quickly to test: up, port open, not ready."""

    def __init__(self) -> None:
        self.status = "NOT_SERVING"
        self.changed = threading.Condition()
        self.score_calls = 0
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        identity = dict(request_deserializer=None, response_serializer=None)
        health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(lambda req, ctx: _HEALTH[self.status], **identity),
            "Watch": grpc.unary_stream_rpc_method_handler(self._watch, **identity),
        })
        reward = grpc.method_handlers_generic_handler(SERVICE, {
            "Score": grpc.unary_unary_rpc_method_handler(self._score, **identity),
        })
        self.server.add_generic_rpc_handlers((health, reward))
        self.server.add_insecure_port(f"127.0.0.5:{self.port}")
        self.server.start()

    def _watch(self, request, context):
        sent = None
        while context.is_active():
            with self.changed:
                if sent == self.status:
                    self.changed.wait(0.2)
                    continue
                sent = self.status
            yield _HEALTH[sent]

    def _score(self, request, context):
        self.score_calls += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "not ready")

    def set(self, status: str) -> None:
        with self.changed:
            self.status = status
            self.changed.notify_all()


def test_a_not_serving_replica_gets_no_calls_and_unavailable_is_retried_on_another(pack):
    packs_dir, sae = pack
    real = start_replica(packs_dir, "127.0.0.2")
    held = HeldReplica()
    try:
        client = RewardClient(f"ipv4:{real.host}:{real.grpc_port},127.0.0.5:{held.port}", timeout=20, retries=0)
        rng = np.random.default_rng(2)

        def score_some(n: int) -> None:
            for _ in range(n):
                x = rng.normal(size=(TOKENS, D_MODEL)).astype(np.float32)
                [scored] = client.score(PACK, [x], score_from=PROMPT)
                np.testing.assert_allclose(scored.token_rewards, expected(sae, x), rtol=1e-4, atol=1e-4)

        score_some(20)
        assert held.score_calls == 0, "the balancer sent calls to a replica reporting NOT_SERVING"

        # Now it claims SERVING but still refuses: round_robin includes it, and each UNAVAILABLE it answers
        # is retried by the channel on the real replica; with retries=0 no call may fail.
        held.set("SERVING")
        time.sleep(0.5)  # the health stream delivers the change
        score_some(20)
        assert held.score_calls > 0, "the SERVING replica never got a call (health checking did not switch it back)"
        client.close()
    finally:
        held.server.stop(0)
        real.stop()


# --- the trainer adapters take the same targets -------------------------------------------------------------


def test_trl_and_the_verl_openrlhf_scorer_score_over_a_multi_replica_target(tmp_path):
    """TRL's MechReward (sync and async) and PackScorer (what the verl and OpenRLHF adapters call) on two
    replicas: every reward equals the float64 reference, and both replicas answered."""
    import asyncio

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mechreward_client._adapter import AdapterSettings, PackScorer
    from mechreward_client.trl import MechReward

    from support import VOCAB, reference_rewards_for_ids, word_prompts, write_reader_fixture

    fx = write_reader_fixture(str(tmp_path))
    replicas = [start_replica(fx.packs_dir, host) for host in ("127.0.0.2", "127.0.0.3")]
    try:
        target = ipv4_target(replicas)
        tok = AutoTokenizer.from_pretrained(fx.tokenizer_dir)
        rng = np.random.default_rng(4)
        prompts = word_prompts(6, seed=4)
        completions = [[int(i) for i in rng.integers(3, len(VOCAB), size=5)] for _ in prompts]
        prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        refs = [reference_rewards_for_ids(fx.model_dir, p + c, fx.layer, fx) for p, c in zip(prompt_ids, completions)]
        pooled = [float(r[len(p):].mean()) for r, p in zip(refs, prompt_ids)]

        scorer = PackScorer(AdapterSettings.resolve(
            {"pack": fx.pack, "reader_model": fx.model_dir, "reader_tokenizer": fx.tokenizer_dir, "target": target}))
        for p, c, ref in zip(prompt_ids, completions, refs):
            [scored] = scorer.score_ids([p + c], [len(p)])
            np.testing.assert_allclose(scored.token_rewards[len(p):], ref[len(p):], rtol=1e-4, atol=1e-4)

        model = AutoModelForCausalLM.from_pretrained(fx.model_dir, local_files_only=True).eval()
        reward = MechReward(fx.pack, model=model, tokenizer=tok, target=target, timeout=30)
        got = reward(prompts, [tok.decode(c) for c in completions], completions)
        np.testing.assert_allclose(got, pooled, rtol=1e-4, atol=1e-4)
        got_async = asyncio.run(reward.ascore(prompts, [tok.decode(c) for c in completions], completions))
        np.testing.assert_allclose(got_async, pooled, rtol=1e-4, atol=1e-4)

        counts = [metrics_of(r) for r in replicas]
        assert all(c > 0 for c in counts), f"round_robin left a replica idle: {counts}"
    finally:
        for r in replicas:
            r.stop()
