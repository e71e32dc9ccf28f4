"""RewardClient (blocking) and AsyncRewardClient (asyncio) for the mechreward.v1 gRPC service.

Both keep only configuration until the first call: the channel opens lazily in the process (and, for the
async client, the event loop) that uses it, and is left out of pickles. That lets reward objects holding a
client be sent to spawned workers (TRL's AsyncGRPOTrainer, Ray actors) and reconnect there.

Score requests are serialized by ``_wire.encode_score_request`` (activations joined into the message straight
from the caller's memory) and sent through a pass-through serializer. With a co-located sidecar the
activations go into a shared-memory segment instead (``_shm``, docs/shared-memory.md) and only descriptors
travel; when the server cannot see the segment (another host or mount namespace, ``--shm false``, an older
server) the client says so once in its log and sends bytes from then on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from . import _constants as C
from ._channel import channel_options
from ._exceptions import APIError, NotFoundError, SharedMemoryUnavailableError, error_from_status
from ._generated import reward_pb2, reward_pb2_grpc
from ._retry import RetryPolicy
from ._shm import Segment, SegmentPool, segment_bytes_for
from ._types import PackInfo, RunSummary, ScoredSequence, ServerInfo
from ._wire import (
    PreparedBatch,
    ShmRef,
    encode_score_request,
    host_bytes,
    prepare_batch,
    decode_pack_info,
    decode_run_summary,
    decode_score_response,
    decode_server_info,
)

log = logging.getLogger("mechreward_client")

_SCORE_METHOD = "/mechreward.v1.RewardService/Score"

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
        shared_memory: bool | None = None,
    ) -> None:
        self.target = target or os.environ.get(C.TARGET_ENV_VAR) or C.DEFAULT_TARGET
        # None: shared memory for requests of at least SHM_AUTO_MIN_BYTES when the server can see the segment;
        # True: for every request (still falling back to bytes when it cannot); False: never.
        self.shared_memory = shared_memory
        self._pool = SegmentPool()
        # Score calls by path, for logs and tests: "shm" (descriptors) or "bytes" (activations on the wire).
        self.transport_counts = {"shm": 0, "bytes": 0}
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
        return ((C.REQUEST_ID_METADATA_KEY, request_id), (C.CLIENT_ID_METADATA_KEY, self._pool.identity()), *auth)

    @staticmethod
    def _stub_for(channel: Any) -> reward_pb2_grpc.RewardServiceStub:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        # Score takes the bytes encode_score_request wrote: a pass-through serializer, no protobuf objects.
        stub.Score = channel.unary_unary(_SCORE_METHOD, request_serializer=None, response_deserializer=reward_pb2.ScoreResponse.FromString)
        return stub

    # -- the two paths of a Score request ----------------------------------------------------------------

    def _wants_shm(self, batch: PreparedBatch) -> bool:
        if self.shared_memory is False or sys.byteorder != "little":
            return False
        if self.shared_memory is None and batch.nbytes < C.SHM_AUTO_MIN_BYTES:
            return False
        return self._pool.enabled

    @staticmethod
    def _bytes_payload(batch: PreparedBatch) -> bytes:
        return encode_score_request(batch, [host_bytes(a) for a in batch.arrays])

    @staticmethod
    def _register_request(segment: Segment) -> reward_pb2.RegisterSharedMemoryRequest:
        return reward_pb2.RegisterSharedMemoryRequest(name=segment.region, key=segment.key, byte_size=segment.capacity, nonce=segment.nonce)

    def _registration_failed(self, error: APIError) -> list[Segment]:
        """After a failed RegisterSharedMemory: the free segments to retire. Shared memory is switched off for
        this client when the server said it cannot use it, or has no such RPC."""
        if isinstance(error, SharedMemoryUnavailableError) or error.status == grpc.StatusCode.UNIMPLEMENTED:
            log.info("shared memory not usable with %s (%s); sending activations as bytes", self.target, error)
            return self._pool.disable(str(error))
        return []

    @staticmethod
    def _lost_region(error: NotFoundError, segment: Segment | None) -> bool:
        """The server no longer holds the region (idle lease, restart): resend the same bytes on the wire."""
        return segment is not None and error.code == "MR_ERR_SHM_NOT_FOUND"

    @staticmethod
    def _from_segment(batch: PreparedBatch, segment: Segment, refs: list[ShmRef]) -> bytes:
        return encode_score_request(batch, [segment.view(r) for r in refs])

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
        shared_memory: bool | None = None,
    ) -> None:
        super().__init__(target, timeout, retries, token, tls, shared_memory)
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
        step: int | None = None,
        timeout: float | None = None,
    ) -> list[ScoredSequence]:
        """Score [num_tokens, d_model] activations (numpy or torch; float32, float16 or bfloat16) with a pack.

        ``score_from`` is the first response token: one int for all sequences, one per sequence, or None (0).
        ``texts`` (the response text), ``expected_answers`` and ``tokens`` (one decoded string per token) are
        optional, one entry (or None) per sequence: the server's canary text rule and its monitor page use them.
        ``step`` is the trainer's global step (optional): the monitor page plots a run by step when it is sent.
        """
        batch = prepare_batch(pack, sequences, score_from, run_id, texts, expected_answers, tokens, step)
        if self._wants_shm(batch):
            scored = self._score_shm(batch, timeout)
            if scored is not None:
                return scored
        response = self._call("Score", self._bytes_payload(batch), timeout)
        self.transport_counts["bytes"] += 1
        return decode_score_response(response, len(batch.arrays))

    def _score_shm(self, batch: PreparedBatch, timeout: float | None) -> list[ScoredSequence] | None:
        """Score through a registered segment; None when shared memory cannot be used (send bytes)."""
        segment, retire = self._pool.take(segment_bytes_for(batch))
        self._retire(retire)
        if segment is None or not (segment.registered or self._register(segment)):
            return None
        keep = True
        try:
            refs = segment.fill(batch)
            try:
                response = self._call("Score", encode_score_request(batch, refs), timeout)
                self.transport_counts["shm"] += 1
            except NotFoundError as error:
                if not self._lost_region(error, segment):
                    raise
                keep = False
                response = self._call("Score", self._from_segment(batch, segment, refs), timeout)
                self.transport_counts["bytes"] += 1
            return decode_score_response(response, len(batch.arrays))
        finally:
            if keep:
                self._pool.give_back(segment)
            else:
                segment.close()

    def _register(self, segment: Segment) -> bool:
        try:
            self._call("RegisterSharedMemory", self._register_request(segment), None)
            segment.registered = True
            return True
        except APIError as error:
            segment.close()
            self._retire(self._registration_failed(error))
            return False
        finally:
            segment.unlink()  # registered or not: the name goes now, the mappings keep the memory

    def _retire(self, segments: list[Segment]) -> None:
        for segment in segments:
            if segment.registered:
                try:
                    self._call("UnregisterSharedMemory", reward_pb2.UnregisterSharedMemoryRequest(name=segment.region), None)
                except APIError:
                    pass  # the server closes it after its lease anyway
            segment.close()

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
        if self._stub is not None and self._pid == os.getpid():
            self._retire(self._pool.drain())
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
                self._stub = self._stub_for(self._channel)
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
        for key in ("_lock", "_channel", "_stub", "_pid", "_pool"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._channel = self._stub = self._pid = None
        self._pool = SegmentPool()


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
        shared_memory: bool | None = None,
    ) -> None:
        super().__init__(target, timeout, retries, token, tls, shared_memory)
        self._channel: grpc.aio.Channel | None = None
        self._stub: reward_pb2_grpc.RewardServiceStub | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    def submit(
        self,
        pack: str,
        sequences: Sequence[Any],
        score_from: int | Sequence[int] | None = None,
        run_id: str | None = None,
        *,
        texts: Sequence[str | None] | None = None,
        expected_answers: Sequence[str | None] | None = None,
        tokens: Sequence[Sequence[str] | None] | None = None,
        step: int | None = None,
        timeout: float | None = None,
    ) -> asyncio.Task[list[ScoredSequence]]:
        """Start scoring and return at once with a task; call it inside a running event loop.

        The activations are copied before this returns (into a free registered segment, or into the message
        bytes), so the caller may overwrite or free its tensors at once: capture the next batch while this
        one is scored, then await the task. Arguments and errors are those of score().
        """
        return self._submit_batch(prepare_batch(pack, sequences, score_from, run_id, texts, expected_answers, tokens, step), timeout)

    def _submit_batch(self, batch: PreparedBatch, timeout: float | None) -> asyncio.Task[list[ScoredSequence]]:
        segment: Segment | None = None
        refs: list[ShmRef] = []
        if self._wants_shm(batch):
            # A free registered segment, or a new one that the task registers before sending.
            segment, retire = self._pool.take(segment_bytes_for(batch))
            self._retire_soon(retire)
        if segment is not None:
            refs = segment.fill(batch)
            payload = encode_score_request(batch, refs)
        else:
            payload = self._bytes_payload(batch)
        return asyncio.ensure_future(self._send(batch, payload, segment, refs, timeout))

    async def _send(self, batch: PreparedBatch, payload: bytes, segment: Segment | None, refs: list[ShmRef], timeout: float | None) -> list[ScoredSequence]:
        keep = segment is not None
        try:
            if segment is not None and not segment.registered and not await self._register(segment):
                # The server cannot see the segment: the same bytes, from the segment, on the wire.
                keep, payload = False, self._from_segment(batch, segment, refs)
            try:
                response = await self._call("Score", payload, timeout)
                self.transport_counts["shm" if keep else "bytes"] += 1
            except NotFoundError as error:
                if not (keep and self._lost_region(error, segment)):
                    raise
                keep = False
                response = await self._call("Score", self._from_segment(batch, segment, refs), timeout)
                self.transport_counts["bytes"] += 1
            return decode_score_response(response, len(batch.arrays))
        finally:
            if segment is not None:
                if keep:
                    self._pool.give_back(segment)
                else:
                    segment.close()

    async def _register(self, segment: Segment) -> bool:
        try:
            await self._call("RegisterSharedMemory", self._register_request(segment), None)
            segment.registered = True
            return True
        except APIError as error:
            self._retire_soon(self._registration_failed(error))
            return False
        finally:
            segment.unlink()  # registered or not: the name goes now, the mappings keep the memory

    def _retire_soon(self, segments: list[Segment]) -> None:
        for segment in segments:
            if segment.registered:
                asyncio.ensure_future(self._unregister(segment))
            else:
                segment.close()

    async def _unregister(self, segment: Segment) -> None:
        try:
            await self._call("UnregisterSharedMemory", reward_pb2.UnregisterSharedMemoryRequest(name=segment.region), None)
        except APIError:
            pass  # the server closes it after its lease anyway
        segment.close()

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
        step: int | None = None,
        timeout: float | None = None,
    ) -> list[ScoredSequence]:
        """Score, as RewardClient.score (submit() and await the task)."""
        return await self.submit(pack, sequences, score_from, run_id, texts=texts, expected_answers=expected_answers, tokens=tokens, step=step, timeout=timeout)

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
            for segment in self._pool.drain():
                await self._unregister(segment)
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
            self._stub = self._stub_for(self._channel)
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
        for key in ("_channel", "_stub", "_owner", "_pool"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._channel = self._stub = self._owner = None
        self._pool = SegmentPool()
