"""Failure behaviour against the real sidecar: status -> exception mapping, deadlines, which failures are
retried, a sidecar that is down, one that is frozen (accepts connections, never answers), and pickling."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
import multiprocessing

import grpc
import numpy as np
import pytest

from mechreward_client import (
    APIConnectionError,
    AuthenticationError,
    APIStatusError,
    InternalServerError,
    APITimeoutError,
    AsyncRewardClient,
    BadRequestError,
    NotFoundError,
    RewardClient,
    TlsFiles,
)
from mechreward_client._exceptions import (
    CODE_TO_EXCEPTION, OverloadedError, PayloadTooLargeError, PermissionDeniedError, SharedMemoryUnavailableError,
    UnavailableError, error_from_status,
)

from support import REPO, free_port, start_sidecar

SYNTHETIC_D_MODEL = 64  # examples/packs/synthetic-tiny


def rows(tokens: int, d_model: int = SYNTHETIC_D_MODEL, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(tokens, d_model)).astype(np.float32)


class AttemptRecorder(grpc.UnaryUnaryClientInterceptor):
    """Every attempt the client makes on the wire, as (method, deadline in seconds): what a retry or a
    deadline does is counted, not timed (a wall-clock bound flakes on a loaded machine)."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, float | None]] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        self.attempts.append((client_call_details.method, client_call_details.timeout))
        return continuation(client_call_details, request)


def record_attempts(monkeypatch, client: RewardClient) -> AttemptRecorder:
    """Routes the client's calls through an AttemptRecorder (on the channel it opens next)."""
    recorder = AttemptRecorder()
    make_stub = client._stub_for
    monkeypatch.setattr(client, "_stub_for", lambda channel: make_stub(grpc.intercept_channel(channel, recorder)))
    return recorder


def retry_log(caplog) -> tuple[list[str], list[str]]:
    """(retries scheduled, gave-up messages) from the client's debug log."""
    messages = [r.getMessage() for r in caplog.records if r.name == "mechreward_client"]
    return [m for m in messages if m.startswith("mechreward: retry ")], [m for m in messages if "not retrying" in m]


SCORE = "/mechreward.v1.RewardService/Score"


def test_server_errors_name_status_code_and_message(parity_sidecar, monkeypatch, caplog):
    client = RewardClient(parity_sidecar.target, timeout=10, retries=3)
    attempts = record_attempts(monkeypatch, client)
    caplog.set_level(logging.DEBUG, logger="mechreward_client")
    with pytest.raises(NotFoundError) as not_found:
        client.score("no-such-pack", [rows(4)])
    assert not_found.value.status == grpc.StatusCode.NOT_FOUND
    assert not_found.value.code == "MR_ERR_PACK_NOT_FOUND"
    assert "topk-saelens" in not_found.value.message  # the server lists the loaded packs
    assert not_found.value.request_id  # echoed by the server in trailing metadata
    assert "NOT_FOUND MR_ERR_PACK_NOT_FOUND" in str(not_found.value)

    with pytest.raises(BadRequestError) as wrong_width:
        client.score("topk-saelens", [rows(4, d_model=65)])
    assert wrong_width.value.code == "MR_ERR_INVALID_TENSOR"
    assert "sequences[0]" in wrong_width.value.message

    with pytest.raises(BadRequestError) as bad_start:
        client.score("topk-saelens", [rows(4)], score_from=4)
    assert bad_start.value.code == "MR_ERR_INVALID_ARGUMENT" and "score_from" in bad_start.value.message

    nan = rows(4)
    nan[2, 3] = np.nan
    with pytest.raises(BadRequestError) as non_finite:
        client.score("topk-saelens", [nan])
    assert non_finite.value.code == "MR_ERR_NONFINITE_INPUT"
    # Four non-retryable failures with retries=3 configured: one attempt each, none retried.
    assert attempts.attempts == [(SCORE, 10.0)] * 4
    scheduled, gave_up = retry_log(caplog)
    assert scheduled == [] and len(gave_up) == 4 and all(m.endswith("after 0 retries") for m in gave_up), gave_up


def test_client_side_validation_names_the_argument():
    client = RewardClient("127.0.0.1:1")  # never contacted
    with pytest.raises(TypeError, match=r"sequences\[0\]: dtype float64"):
        client.score("p", [np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected shape"):
        client.score("p", [np.zeros((2, 4), np.float32), np.zeros(4, np.float32)])
    with pytest.raises(ValueError, match="score_from: expected 2 values"):
        client.score("p", [np.zeros((2, 4), np.float32)] * 2, score_from=[0])
    with pytest.raises(ValueError, match="timeout"):
        RewardClient("127.0.0.1:1", timeout=0)


# The exception class each documented gRPC status maps to (docs/errors.md "gRPC" column).
STATUS_CLASS = {
    "INVALID_ARGUMENT": BadRequestError, "NOT_FOUND": NotFoundError, "UNAVAILABLE": UnavailableError,
    "INTERNAL": InternalServerError, "FAILED_PRECONDITION": InternalServerError,
    "CANCELLED": APIStatusError, "DEADLINE_EXCEEDED": APITimeoutError, "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
}


def test_catalogue_maps_every_code_and_retries_only_safe_failures():
    """Drift check against docs/errors.md: same codes, matching status class, same retry decision, except
    MR_ERR_DEADLINE: the server sends it when this client's own deadline passed, so the client treats it as
    its timeout (not retried, like every timeout)."""
    with open(os.path.join(REPO, "docs", "errors.md")) as f:
        table = [[c.strip() for c in line.split("|")[1:5]] for line in f if line.startswith("| MR_ERR_")]
    assert {row[0] for row in table} == set(CODE_TO_EXCEPTION), "Python exception map and docs/errors.md list the same codes"
    for code, status, _http, retry in table:
        cls = CODE_TO_EXCEPTION[code]
        if status == "RESOURCE_EXHAUSTED":
            assert cls in (OverloadedError, PayloadTooLargeError), code
        elif code == "MR_ERR_SHM_UNAVAILABLE":  # a FAILED_PRECONDITION the client acts on: falls back to bytes
            assert cls is SharedMemoryUnavailableError and issubclass(cls, STATUS_CLASS[status]), code
        else:
            assert cls is STATUS_CLASS[status], code
        if code != "MR_ERR_DEADLINE":
            assert cls.retryable == (retry == "yes"), code
    assert not CODE_TO_EXCEPTION["MR_ERR_DEADLINE"].retryable
    assert isinstance(error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "MR_ERR_OVERLOADED: busy"), OverloadedError)
    assert isinstance(error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "MR_ERR_REQUEST_TOO_LARGE: 9 > 8"), PayloadTooLargeError)
    assert isinstance(error_from_status(grpc.StatusCode.UNAVAILABLE, "MR_ERR_NOT_READY: warming up"), UnavailableError)
    # Without a catalogue code the status came from the gRPC runtime: connection failure, own deadline.
    assert type(error_from_status(grpc.StatusCode.UNAVAILABLE, "failed to connect")) is APIConnectionError
    assert type(error_from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")) is APITimeoutError
    error = pickle.loads(pickle.dumps(error_from_status(grpc.StatusCode.NOT_FOUND, "MR_ERR_PACK_NOT_FOUND: x", "rid")))
    assert (type(error), error.code, error.status, error.request_id) == (NotFoundError, "MR_ERR_PACK_NOT_FOUND", grpc.StatusCode.NOT_FOUND, "rid")


def test_sidecar_down_fails_fast_after_capped_retries(monkeypatch, caplog):
    client = RewardClient(f"127.0.0.1:{free_port()}", timeout=2.0, retries=2)
    attempts = record_attempts(monkeypatch, client)
    caplog.set_level(logging.DEBUG, logger="mechreward_client")
    with pytest.raises(APIConnectionError) as down:
        client.score("synthetic-tiny", [rows(4)])
    # Connection refused, not the 2 s deadline: the client did not hang on a dead port.
    assert type(down.value) is APIConnectionError and down.value.status == grpc.StatusCode.UNAVAILABLE
    assert attempts.attempts == [(SCORE, 2.0)] * 3  # the first attempt and two retries, each with the deadline
    scheduled, gave_up = retry_log(caplog)
    assert len(scheduled) == 2 and gave_up == [gave_up[0]] and gave_up[0].endswith("after 2 retries"), (scheduled, gave_up)
    # Capped exponential backoff: 0.1 s then 0.2 s, each plus at most BACKOFF_JITTER.
    jitter = client.retry_policy.jitter
    delays = [float(m.split(" in ")[1].split("s after")[0]) for m in scheduled]
    assert 0.1 <= delays[0] <= 0.1 * (1 + jitter) + 0.005 and 0.2 <= delays[1] <= 0.2 * (1 + jitter) + 0.005, delays
    print(f"\nsidecar down: APIConnectionError after 2 retries (backoffs {delays})")


def test_frozen_sidecar_hits_the_deadline_and_is_not_retried(bundled_sidecar, monkeypatch, caplog):
    client = RewardClient(bundled_sidecar.target, timeout=1.5, retries=3)
    attempts = record_attempts(monkeypatch, client)
    assert client.score("synthetic-tiny", [rows(4)])[0].token_rewards.shape == (4,)  # connected and working
    caplog.set_level(logging.DEBUG, logger="mechreward_client")
    os.kill(bundled_sidecar.process.pid, signal.SIGSTOP)  # TCP stays open, nothing answers
    try:
        with pytest.raises(APITimeoutError) as timed_out:
            client.score("synthetic-tiny", [rows(4)])
    finally:
        os.kill(bundled_sidecar.process.pid, signal.SIGCONT)
    # gRPC's own deadline ended the call (DEADLINE_EXCEEDED, no catalogue code from the frozen server), and
    # the timeout was not retried although retries=3: one attempt, sent with the 1.5 s deadline.
    assert timed_out.value.status == grpc.StatusCode.DEADLINE_EXCEEDED and timed_out.value.code is None
    assert attempts.attempts == [(SCORE, 1.5)] * 2  # the healthy call before, then the frozen one
    scheduled, gave_up = retry_log(caplog)
    assert scheduled == [] and len(gave_up) == 1 and "DEADLINE_EXCEEDED" in gave_up[0] and gave_up[0].endswith("after 0 retries"), gave_up
    print("\nfrozen sidecar: APITimeoutError after one attempt (timeout=1.5, retries=3)")
    # The same client recovers once the server answers again.
    assert client.score("synthetic-tiny", [rows(4)])[0].token_rewards.shape == (4,)


def test_unavailable_is_retried_until_the_sidecar_comes_up():
    """A client started before its sidecar: connection refused (UNAVAILABLE), then MR_ERR_NOT_READY while
    packs warm up, both retried with capped backoff until the first real answer."""
    port = free_port()
    client = RewardClient(f"127.0.0.1:{port}", timeout=5.0, retries=30)
    holder = {}
    starter = threading.Timer(0.5, lambda: holder.update(sidecar=start_sidecar(os.path.join(REPO, "examples", "packs"), grpc_port=port, wait_ready=False)))
    starter.start()
    try:
        results = client.score("synthetic-tiny", [rows(6)], score_from=2)
        assert results[0].token_rewards.shape == (6,) and np.all(results[0].token_rewards[:2] == 0)
    finally:
        starter.join()
        if "sidecar" in holder:
            assert holder["sidecar"].stop() == 0


def _score_in_child(client_bytes: bytes, activations: np.ndarray) -> float:
    client = pickle.loads(client_bytes)
    return client.score("synthetic-tiny", [activations], score_from=1)[0].reward


def test_clients_pickle_without_their_channel_and_reconnect_in_a_spawned_process(bundled_sidecar):
    client = RewardClient(bundled_sidecar.target, timeout=10)
    x = rows(5)
    here = client.score("synthetic-tiny", [x], score_from=1)[0].reward  # channel open in this process
    data = pickle.dumps(client)
    assert b"Channel" not in data
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(_score_in_child, data, x).result(timeout=120)
    assert there == here
    async_copy = pickle.loads(pickle.dumps(AsyncRewardClient(bundled_sidecar.target)))
    assert async_copy.target == bundled_sidecar.target and async_copy._channel is None


def test_bearer_token_from_argument_or_environment(monkeypatch):
    """A server started with an auth token refuses calls without it (AuthenticationError, not retried) and
    serves calls that carry it, given as an argument or through MECHREWARD_AUTH_TOKEN."""
    sidecar = start_sidecar(os.path.join(REPO, "examples", "packs"), env={"MECHREWARD_AUTH_TOKEN": "py-secret-42"})
    try:
        with pytest.raises(AuthenticationError, match="Bearer"):
            RewardClient(sidecar.target, timeout=5, retries=3).list_packs()
        with pytest.raises(AuthenticationError, match="not valid"):
            RewardClient(sidecar.target, timeout=5, token="wrong").list_packs()
        assert [p.name for p in RewardClient(sidecar.target, timeout=5, token="py-secret-42").list_packs()] == ["synthetic-tiny"]
        monkeypatch.setenv("MECHREWARD_AUTH_TOKEN", "py-secret-42")
        client = RewardClient(sidecar.target, timeout=5)
        assert client.score("synthetic-tiny", [rows(4)])[0].token_rewards.shape == (4,)
        assert "py-secret-42" not in repr(client)
    finally:
        sidecar.stop()


def _make_certs(directory: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl command."""
    f = lambda name: os.path.join(directory, name)  # noqa: E731
    ssl = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", f("ca.key"), "-out", f("ca.pem"))
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"), ("client", "extendedKeyUsage=clientAuth\n")):
        with open(f(f"{name}.ext"), "w") as out:
            out.write(ext)
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f(f"{name}.key"), "-out", f(f"{name}.csr"))
        ssl("x509", "-req", "-in", f(f"{name}.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", f(f"{name}.ext"), "-out", f(f"{name}.pem"))
    return {k: f(v) for k, v in {"ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key", "client_cert": "client.pem", "client_key": "client.key"}.items()}


def test_tls_and_mutual_tls_against_the_real_sidecar(tmp_path):
    """The client speaks TLS (trusting a CA) and mutual TLS (with its own certificate); a plaintext client
    cannot talk to a TLS sidecar."""
    certs = _make_certs(str(tmp_path))
    packs = os.path.join(REPO, "examples", "packs")
    sidecar = start_sidecar(packs, "--tls-cert", certs["server_cert"], "--tls-key", certs["server_key"], "--tls-client-ca", certs["ca"])
    try:
        tls = TlsFiles(ca=certs["ca"], cert=certs["client_cert"], key=certs["client_key"])
        client = RewardClient(sidecar.target, timeout=5, tls=tls)
        assert client.score("synthetic-tiny", [rows(4)])[0].token_rewards.shape == (4,)
        copy = pickle.loads(pickle.dumps(client))  # paths pickle; the copy opens its own TLS channel
        assert [p.name for p in copy.list_packs()] == ["synthetic-tiny"]
        with pytest.raises(APIConnectionError):
            RewardClient(sidecar.target, timeout=3, retries=0, tls=TlsFiles(ca=certs["ca"])).list_packs()  # no client cert
        with pytest.raises(APIConnectionError):
            RewardClient(sidecar.target, timeout=3, retries=0).list_packs()  # plaintext
    finally:
        sidecar.stop()
