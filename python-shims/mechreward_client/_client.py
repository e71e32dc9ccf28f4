"""RewardClient (blocking) and AsyncRewardClient (asyncio) for the mechreward.v1 gRPC service.

Both keep only configuration until the first call: the channel opens lazily in the process (and, for the
async client, the event loop) that uses it, and is left out of pickles. That lets reward objects holding a
client be sent to spawned workers (TRL's AsyncGRPOTrainer, Ray actors) and reconnect there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from . import _constants as C
from ._channel import channel_options
from ._exceptions import APIError, error_from_status
from ._generated import reward_pb2, reward_pb2_grpc
from ._retry import RetryPolicy
from ._types import PackInfo, RunSummary, ScoredSequence, ServerInfo
from ._wire import (
    build_score_request,
    decode_pack_info,
    decode_run_summary,
    decode_score_response,
    decode_server_info,
)

_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", C.MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", C.MAX_SEND_MESSAGE_BYTES),
    # Reconnect about as fast as we retry: gRPC's default (1 s growing to 120 s) would keep failing our
    # retries fast with UNAVAILABLE long after a restarted sidecar is back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(C.MAX_BACKOFF_S * 1000)),
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a sidecar served over TLS: the CA that signed its certificate, and for mutual TLS this
    client's certificate and key."""

    ca: str
    cert: str | None = None
    key: str | None = None


class _ClientBase:
    """Configuration shared by both clients; no connection state."""

    def __init__(
        self,
        target: str | None,
        timeout: float,
        retries: int,
        token: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.target = target or os.environ.get(C.TARGET_ENV_VAR) or C.DEFAULT_TARGET
        # Paths, not loaded credentials: they pickle, and each process reads them when it opens its channel.
        self._tls = tls
        # Kept out of repr(); pickled with the client, so a spawned worker can authenticate too.
        self._token = token if token is not None else os.environ.get(C.TOKEN_ENV_VAR) or None
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r} (calls without a deadline can hang a trainer)")
        self.timeout = float(timeout)
        self.retry_policy = RetryPolicy(retries=retries)

    @property
    def retries(self) -> int:
        return self.retry_policy.retries

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r}, timeout={self.timeout}, retries={self.retries})"

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if self._tls is None:
            return None
        read = lambda p: None if p is None else open(p, "rb").read()  # noqa: E731
        return grpc.ssl_channel_credentials(read(self._tls.ca), read(self._tls.key), read(self._tls.cert))

    def _metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        auth = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        return ((C.REQUEST_ID_METADATA_KEY, request_id), *auth)

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else float(timeout)

    @staticmethod
    def _error(rpc_error: grpc.RpcError, request_id: str) -> APIError:
        return error_from_status(rpc_error.code(), rpc_error.details(), request_id)


class RewardClient(_ClientBase):
    """Blocking client. Thread-safe; one channel per process, opened on first use.

        client = RewardClient("127.0.0.1:50051", timeout=10)
        rewards = [r.reward for r in client.score("my-pack", [acts], score_from=[12])]
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float = C.DEFAULT_TIMEOUT_S,
        retries: int = C.DEFAULT_RETRIES,
        token: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(target, timeout, retries, token, tls)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: reward_pb2_grpc.RewardServiceStub | None = None
        self._pid: int | None = None

    # -- public API --------------------------------------------------------------------------------------

    def score(
        self,
        pack: str,
        sequences: Sequence[Any],
        score_from: int | Sequence[int] | None = None,
        run_id: str | None = None,
        *,
        texts: Sequence[str | None] | None = None,
        expected_answers: Sequence[str | None] | None = None,
        tokens: Sequence[Sequence[str] | None] | None = None,
        timeout: float | None = None,
    ) -> list[ScoredSequence]:
        """Score [num_tokens, d_model] activations (numpy or torch; float32, float16 or bfloat16) with a pack.

        ``score_from`` is the first response token: one int for all sequences, one per sequence, or None (0).
        ``texts`` (the response text), ``expected_answers`` and ``tokens`` (one decoded string per token) are
        optional, one entry (or None) per sequence: the server's canary text rule and its monitor page use them.
        """
        request = build_score_request(pack, sequences, score_from, run_id, texts, expected_answers, tokens)
        response = self._call("Score", request, timeout)
        return decode_score_response(response, len(request.sequences))

    def list_packs(self, *, timeout: float | None = None) -> list[PackInfo]:
        response = self._call("ListPacks", reward_pb2.ListPacksRequest(), timeout)
        return [decode_pack_info(p) for p in response.packs]

    def get_info(self, *, timeout: float | None = None) -> ServerInfo:
        return decode_server_info(self._call("GetInfo", reward_pb2.GetInfoRequest(), timeout))

    def list_runs(self, *, timeout: float | None = None) -> list[RunSummary]:
        """Every run the server's canary monitor has seen (Score calls with a run_id), most recent first."""
        return [decode_run_summary(r) for r in self._call("ListRuns", reward_pb2.ListRunsRequest(), timeout).runs]

    def get_run(self, run_id: str, *, timeout: float | None = None) -> RunSummary:
        """One run's monitor summary (NotFoundError for a run the server has not seen)."""
        return decode_run_summary(self._call("GetRun", reward_pb2.GetRunRequest(run_id=run_id), timeout).summary)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = self._stub = self._pid = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection and retries --------------------------------------------------------------------------

    def _service(self) -> reward_pb2_grpc.RewardServiceStub:
        pid = os.getpid()
        with self._lock:
            # A forked child must not reuse the parent's channel: open a fresh one in this process.
            if self._stub is None or self._pid != pid:
                creds = self._credentials()
                self._channel = (
                    grpc.secure_channel(self.target, creds, options=channel_options(self.target, _CHANNEL_OPTIONS))
                    if creds
                    else grpc.insecure_channel(self.target, options=channel_options(self.target, _CHANNEL_OPTIONS))
                )
                self._stub = reward_pb2_grpc.RewardServiceStub(self._channel)
                self._pid = pid
            return self._stub

    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        deadline = self._deadline(timeout)
        retries_done = 0
        while True:
            request_id = uuid.uuid4().hex
            try:
                rpc = getattr(self._service(), method)
                return rpc(request, timeout=deadline, metadata=self._metadata(request_id))
            except grpc.RpcError as rpc_error:
                error = self._error(rpc_error, request_id)
                delay = self.retry_policy.next_delay(retries_done, error)
                if delay is None:
                    raise error from rpc_error
            time.sleep(delay)
            retries_done += 1

    # -- pickling: configuration only ---------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_lock", "_channel", "_stub", "_pid"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._channel = self._stub = self._pid = None


class AsyncRewardClient(_ClientBase):
    """asyncio client with the same methods as RewardClient, as coroutines.

    A grpc.aio channel belongs to the event loop it was made in, so the channel opens on first use in each
    loop (and process). Use it from one loop at a time, e.g. TRL's persistent reward loop.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float = C.DEFAULT_TIMEOUT_S,
        retries: int = C.DEFAULT_RETRIES,
        token: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(target, timeout, retries, token, tls)
        self._channel: grpc.aio.Channel | None = None
        self._stub: reward_pb2_grpc.RewardServiceStub | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    async def score(
        self,
        pack: str,
        sequences: Sequence[Any],
        score_from: int | Sequence[int] | None = None,
        run_id: str | None = None,
        *,
        texts: Sequence[str | None] | None = None,
        expected_answers: Sequence[str | None] | None = None,
        tokens: Sequence[Sequence[str] | None] | None = None,
        timeout: float | None = None,
    ) -> list[ScoredSequence]:
        request = build_score_request(pack, sequences, score_from, run_id, texts, expected_answers, tokens)
        response = await self._call("Score", request, timeout)
        return decode_score_response(response, len(request.sequences))

    async def list_packs(self, *, timeout: float | None = None) -> list[PackInfo]:
        response = await self._call("ListPacks", reward_pb2.ListPacksRequest(), timeout)
        return [decode_pack_info(p) for p in response.packs]

    async def get_info(self, *, timeout: float | None = None) -> ServerInfo:
        return decode_server_info(await self._call("GetInfo", reward_pb2.GetInfoRequest(), timeout))

    async def list_runs(self, *, timeout: float | None = None) -> list[RunSummary]:
        response = await self._call("ListRuns", reward_pb2.ListRunsRequest(), timeout)
        return [decode_run_summary(r) for r in response.runs]

    async def get_run(self, run_id: str, *, timeout: float | None = None) -> RunSummary:
        response = await self._call("GetRun", reward_pb2.GetRunRequest(run_id=run_id), timeout)
        return decode_run_summary(response.summary)

    async def close(self) -> None:
        if self._channel is not None and self._owner == (os.getpid(), asyncio.get_running_loop()):
            await self._channel.close()
        self._channel = self._stub = self._owner = None

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _service(self) -> reward_pb2_grpc.RewardServiceStub:
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._stub is None or self._owner != owner:
            creds = self._credentials()
            self._channel = (
                grpc.aio.secure_channel(self.target, creds, options=channel_options(self.target, _CHANNEL_OPTIONS))
                if creds
                else grpc.aio.insecure_channel(self.target, options=channel_options(self.target, _CHANNEL_OPTIONS))
            )
            self._stub = reward_pb2_grpc.RewardServiceStub(self._channel)
            self._owner = owner
        return self._stub

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        deadline = self._deadline(timeout)
        retries_done = 0
        while True:
            request_id = uuid.uuid4().hex
            try:
                rpc = getattr(self._service(), method)
                return await rpc(request, timeout=deadline, metadata=self._metadata(request_id))
            except grpc.RpcError as rpc_error:  # grpc.aio.AioRpcError is a grpc.RpcError
                error = self._error(rpc_error, request_id)
                delay = self.retry_policy.next_delay(retries_done, error)
                if delay is None:
                    raise error from rpc_error
            await asyncio.sleep(delay)
            retries_done += 1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_channel", "_stub", "_owner"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._channel = self._stub = self._owner = None
