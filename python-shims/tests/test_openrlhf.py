"""OpenRLHF 0.11.2 (installed with --no-deps) gets rewards from us through its own SingleTurnAgentExecutor.

- ``--reward.remote_url examples/openrlhf_reward.py``: OpenRLHF exec's our one-line file and calls
  ``reward_func``; the reward equals a float64 reference from ``hidden_states[layer + 1]`` of an independent
  full forward of the reader model.
- ``--reward.remote_url http://.../v1/openrlhf/PACK``: the sidecar forwards the text to a real reader process
  (``python -m mechreward_client.reader``) and answers the same reward; with two URLs the executor rotates
  over both; the empty-list request (sent by OpenRLHF up to 0.11.0 to every extra URL) gets empty lists.
- A run_id (``MECHREWARD_RUN_ID``; ``?run_id=`` in the URL) puts each sample on the sidecar's monitor with its
  response text and one string per token.
- Failures give the fallback reward with ``extra_logs.mechreward_unscored = 1``, never a missing reward.

The generation engine is a stand-in returning fixed token ids (vLLM cannot run here); everything after it is
OpenRLHF's code and ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from types import SimpleNamespace

import aiohttp
import pytest
from openrlhf.utils.agent import SingleTurnAgentExecutor
from transformers import AutoTokenizer

from support import REPO, ReaderProcess, reference_rewards_for_ids, start_sidecar, write_reader_fixture

EXAMPLE = os.path.join(REPO, "examples", "openrlhf_reward.py")
FLAG_ALL_PACK = "tiny-qwen2-flag-all"


def copy_flagging_every_rollout(packs_dir: str, pack: str, name: str) -> None:
    """The pack again, with a canary whose threshold (-1) every activation (>= 0) exceeds: every rollout is
    flagged, so the run keeps each one with its text and tokens."""
    shutil.copytree(os.path.join(packs_dir, pack), os.path.join(packs_dir, name))
    path = os.path.join(packs_dir, name, "pack.json")
    with open(path) as f:
        spec = json.load(f)
    spec.update(name=name, canaries=[{"name": "always", "feature": spec["features"][0]["id"], "threshold": -1.0}])
    with open(path, "w") as f:
        json.dump(spec, f)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    made = write_reader_fixture(str(tmp_path_factory.mktemp("openrlhf")))
    copy_flagging_every_rollout(made.packs_dir, made.pack, FLAG_ALL_PACK)
    return made


@pytest.fixture(scope="module")
def reader(fixture):
    r = ReaderProcess(fixture.model_dir, fixture.tokenizer_dir)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def sidecar(fixture, reader):
    s = start_sidecar(fixture.packs_dir, "--reader-url", reader.url, "--reader-timeout-ms", "30000")
    yield s
    assert s.stop() == 0


class StandInEngine:
    """vLLM's place: answers fixed response ids for each prompt (OpenRLHF tokenizes the prompt itself)."""

    def __init__(self, response_ids: list[int]) -> None:
        self.response_ids = response_ids
        self.seen: list[list[int]] = []

    async def generate(self, prompt_ids, sampling_params, multi_modal_data=None):
        self.seen.append(list(prompt_ids))
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(self.response_ids), text="", finish_reason="stop", logprobs=None)])


def execute(executor: SingleTurnAgentExecutor, tok, prompt: str, response_ids: list[int]) -> dict:
    engine = StandInEngine(response_ids)
    params = SimpleNamespace(max_tokens=8, logprobs=None)
    return asyncio.run(executor.execute(prompt, "w1", params, 64, tok, engine))


def expected_reward(fixture, tok, prompt: str, response_ids: list[int]) -> float:
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ref = reference_rewards_for_ids(fixture.model_dir, prompt_ids + response_ids, fixture.layer, fixture)
    return float(ref[len(prompt_ids):].mean())


def reward_of(out: dict) -> float:
    assert out["reward"] is not None, "a missing reward is fatal in OpenRLHF"
    value = out["reward"]
    return float(value[0] if isinstance(value, list) else value)


@pytest.fixture()
def env_settings(fixture, sidecar, monkeypatch):
    monkeypatch.setenv("MECHREWARD_PACK", fixture.pack)
    monkeypatch.setenv("MECHREWARD_READER_MODEL", fixture.model_dir)
    monkeypatch.setenv("MECHREWARD_READER_TOKENIZER", fixture.tokenizer_dir)
    monkeypatch.setenv("MECHREWARD_TARGET", sidecar.target)


def test_reward_func_file_through_openrlhfs_executor(fixture, env_settings):
    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    executor = SingleTurnAgentExecutor(EXAMPLE)
    assert executor.reward_func is not None, "OpenRLHF loaded reward_func from the .py file"
    for prompt, response in [("w1 w2 w3", [10, 11, 12, 1]), ("w7 w8", [20, 21])]:
        out = execute(executor, tok, prompt, response)
        assert reward_of(out) == pytest.approx(expected_reward(fixture, tok, prompt, response), rel=1e-4, abs=1e-4)
        assert abs(reward_of(out)) > 1e-3
        assert out["scores"] == out["reward"]
        assert out["extra_logs"]["mechreward_unscored"] == [0.0]


def test_http_endpoint_through_openrlhfs_executor(fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    url = f"http://127.0.0.1:{sidecar.http_port}/v1/openrlhf/{fixture.pack}"
    prompt, response = "w3 w4 w5 w6", [30, 31, 32, 1]
    out = execute(SingleTurnAgentExecutor([url]), tok, prompt, response)
    assert reward_of(out) == pytest.approx(expected_reward(fixture, tok, prompt, response), rel=1e-4, abs=1e-4)
    assert out["extra_logs"]["mechreward_unscored"] == [0]


@pytest.mark.parametrize("route", ["py", "http"])
def test_a_run_id_puts_each_sample_on_the_monitor_with_its_text_and_tokens(fixture, sidecar, monkeypatch, route):
    """.py route: MECHREWARD_RUN_ID; HTTP route: ?run_id= in the URL. OpenRLHF passes no training step."""
    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    run_id = f"openrlhf-{route}-run"
    if route == "py":
        for name, value in [("PACK", FLAG_ALL_PACK), ("READER_MODEL", fixture.model_dir), ("READER_TOKENIZER", fixture.tokenizer_dir),
                            ("TARGET", sidecar.target), ("RUN_ID", run_id)]:
            monkeypatch.setenv(f"MECHREWARD_{name}", value)
        executor = SingleTurnAgentExecutor(EXAMPLE)
    else:
        executor = SingleTurnAgentExecutor([f"http://127.0.0.1:{sidecar.http_port}/v1/openrlhf/{FLAG_ALL_PACK}?run_id={run_id}"])
    prompt, response = "w1 w2 w3", [10, 11, 12]
    out = execute(executor, tok, prompt, response)

    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1/runs/{run_id}") as r:
        run = json.load(r)
    assert run["sequences"] == 1
    assert [p["reward_mean"] for p in run["history"]] == pytest.approx([reward_of(out)], rel=1e-6)
    assert "step" not in run["history"][0]
    (flagged,) = run["recent_flagged"]
    assert [f["name"] for f in flagged["flags"]] == ["always"]
    words = tok.decode(tok(prompt, add_special_tokens=False)["input_ids"] + response).split(" ")
    assert flagged["tokens"] == [words[0]] + [" " + w for w in words[1:]], "one string per token, joining to the text"
    assert flagged["text"] == " " + " ".join(words[3:]), "the response: the query after its prompt"
    assert len(flagged["token_rewards"]) == 6 and flagged["token_rewards"][:3] == [0, 0, 0]


def test_two_urls_and_the_empty_list_request(fixture, sidecar):
    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    urls = [f"http://127.0.0.1:{sidecar.http_port}/v1/openrlhf/{fixture.pack}", f"http://localhost:{sidecar.http_port}/v1/openrlhf/{fixture.pack}"]
    executor = SingleTurnAgentExecutor(urls)
    prompt, response = "w9 w10", [40, 41, 1]
    want = expected_reward(fixture, tok, prompt, response)
    for _ in range(2):  # the executor rotates over its URLs from call to call
        assert reward_of(execute(executor, tok, prompt, response)) == pytest.approx(want, rel=1e-4, abs=1e-4)

    async def empty() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.post(urls[1], json={"query": [], "prompts": [], "labels": []}) as r:
                return r.status, await r.json()

    assert asyncio.run(empty()) == (200, {"rewards": [], "scores": [], "extra_logs": {}})


def test_failures_give_the_flagged_fallback_never_a_missing_reward(fixture, monkeypatch, tmp_path):
    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    reader = ReaderProcess(fixture.model_dir, fixture.tokenizer_dir)
    own = start_sidecar(fixture.packs_dir, "--reader-url", reader.url, "--reader-timeout-ms", "30000")
    try:
        url = f"http://127.0.0.1:{own.http_port}/v1/openrlhf/{fixture.pack}"
        reader.stop()  # the sidecar is up, its reader is gone
        out = execute(SingleTurnAgentExecutor([url]), tok, "w1 w2", [5, 6])
        assert reward_of(out) == 0.0
        assert out["extra_logs"]["mechreward_unscored"] == [1]

        # The .py path with the sidecar stopped: reward_func answers the fallback, flagged.
        monkeypatch.setenv("MECHREWARD_PACK", fixture.pack)
        monkeypatch.setenv("MECHREWARD_READER_MODEL", fixture.model_dir)
        monkeypatch.setenv("MECHREWARD_READER_TOKENIZER", fixture.tokenizer_dir)
        monkeypatch.setenv("MECHREWARD_TARGET", own.target)
        monkeypatch.setenv("MECHREWARD_LAYER", str(fixture.layer))
        monkeypatch.setenv("MECHREWARD_TIMEOUT", "2")
        monkeypatch.setenv("MECHREWARD_RETRIES", "0")
    finally:
        own.stop()
        reader.stop()
    out = execute(SingleTurnAgentExecutor(EXAMPLE), tok, "w1 w2", [5, 6])
    assert reward_of(out) == 0.0
    assert out["extra_logs"]["mechreward_unscored"] == [1.0]


def test_settings_are_checked_naming_the_field(fixture):
    from mechreward_client._adapter import AdapterSettings

    env = {"MECHREWARD_PACK": "p", "MECHREWARD_READER_MODEL": fixture.model_dir, "MECHREWARD_TIMEOUT": "7"}
    s = AdapterSettings.resolve({"pack": "given"}, env=env)
    assert (s.pack, s.reader_model, s.timeout, s.on_error) == ("given", fixture.model_dir, 7.0, "raise")
    for given, env_, message in [
        ({}, {}, "pack is required"),
        ({"pack": "p"}, {}, "reader_model is required"),
        ({"pack": "p", "reader_model": "m", "timeout": 0}, {}, "timeout must be > 0"),
        ({"pack": "p", "reader_model": "m", "layer": "x"}, {}, "layer: 'x' is not an integer"),
        ({"pack": "p", "reader_model": "m", "on_error": "ignore"}, {}, "on_error: expected 'raise' or 'flag'"),
        ({"pack": "p", "reader_model": "m", "packs": "q"}, {}, "unknown key(s) ['packs']"),
        ({"pack": "p", "reader_model": "m"}, {"MECHREWARD_READER_DEVICE": "gpu0"},
         "reader_device (MECHREWARD_READER_DEVICE): 'gpu0' is not a torch device"),
        ({"pack": "p", "reader_model": "m", "reader_device": "cuda:1"}, {},
         "reader_device (MECHREWARD_READER_DEVICE): 'cuda:1', but this torch sees no CUDA device"),
    ]:
        with pytest.raises(ValueError) as err:
            AdapterSettings.resolve(given, env=env_)
        assert message in str(err.value)


def test_the_reader_device_setting_reaches_the_reader(fixture):
    """MECHREWARD_READER_DEVICE (or reader_device) is where the frozen reader loads; the default is the CPU.
    This machine has no GPU, so the device given is torch's "meta" (weights without data): the model's
    parameters say where it went, and it gets a reader of its own (one per device) while the default stays on
    the CPU."""
    import torch

    from mechreward_client._adapter import AdapterSettings, PackScorer

    base = {"MECHREWARD_PACK": "p", "MECHREWARD_READER_MODEL": fixture.model_dir,
            "MECHREWARD_READER_TOKENIZER": fixture.tokenizer_dir}
    default = AdapterSettings.resolve(None, env=base)
    placed = AdapterSettings.resolve(None, env={**base, "MECHREWARD_READER_DEVICE": "meta"})
    assert (default.reader_device, placed.reader_device) == ("cpu", "meta")
    reader = PackScorer(placed).reader
    assert next(reader.model.parameters()).device == torch.device("meta")
    assert next(PackScorer(default).reader.model.parameters()).device == torch.device("cpu")
    assert PackScorer(default).reader is not reader, "one reader per device"
    assert PackScorer(placed).reader is reader, "loaded once per process and device"


def test_reader_service_rejects_bad_requests_naming_the_field(reader):
    import urllib.error
    import urllib.request

    def post(body: bytes) -> tuple[int, dict]:
        req = urllib.request.Request(f"{reader.url}/v1/residuals", data=body, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    for body, field in [(b"nope", "body"), (b'{"texts": "a", "prompts": [], "layer": 0}', "texts"),
                        (b'{"texts": ["a"], "prompts": [], "layer": 0}', "prompts"),
                        (b'{"texts": ["w1"], "prompts": ["w1"], "layer": true}', "layer"),
                        (b'{"texts": ["w1"], "prompts": ["w1"], "layer": 9}', "layer")]:
        status, answer = post(body)
        assert status == 400 and answer["error"].startswith(f"{field}:"), (body, answer)
    status, answer = post(b'{"texts": ["w1 w2 w3"], "prompts": ["w1"], "layer": 1}')
    assert status == 200 and answer["d_model"] == 32
    seq = answer["sequences"][0]
    assert (seq["num_tokens"], seq["score_from"], seq["tokens"], seq["dtype"]) == (3, 1, ["w1", " w2", " w3"], "f32")


def test_openrlhfs_retries_ride_out_a_sidecar_that_is_briefly_unavailable(fixture, sidecar):
    """OpenRLHF retries any non-2xx 5 times, 1 s apart: two 503s (what the route answers while the sidecar is
    not ready) and then the real answer still give the sample its reward. A small forwarding proxy in front of
    the real route plays the two 503s; the third attempt reaches the sidecar."""
    from aiohttp import web

    tok = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    target = f"http://127.0.0.1:{sidecar.http_port}/v1/openrlhf/{fixture.pack}"
    attempts: list[int] = []

    async def scenario() -> dict:
        async def handle(request: web.Request) -> web.Response:
            attempts.append(len(attempts) + 1)
            if len(attempts) <= 2:
                return web.json_response({"error": "server is not ready", "code": "MR_ERR_NOT_READY"}, status=503)
            async with aiohttp.ClientSession() as session:
                async with session.post(target, data=await request.read(), headers={"content-type": "application/json"}) as r:
                    return web.Response(status=r.status, body=await r.read(), content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/openrlhf/{pack}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            executor = SingleTurnAgentExecutor([f"http://127.0.0.1:{port}/v1/openrlhf/{fixture.pack}"])
            return await executor.execute("w2 w3", "w1", SimpleNamespace(max_tokens=8, logprobs=None), 64, tok, StandInEngine([50, 51, 1]))
        finally:
            await runner.cleanup()

    out = asyncio.run(scenario())
    assert attempts == [1, 2, 3]
    assert reward_of(out) == pytest.approx(expected_reward(fixture, tok, "w2 w3", [50, 51, 1]), rel=1e-4, abs=1e-4)
    assert out["extra_logs"]["mechreward_unscored"] == [0]
