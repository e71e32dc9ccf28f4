"""The client's fast path and shared memory against the real sidecar (docs/shared-memory.md).

- the hand-written ScoreRequest encoder writes exactly what protobuf writes;
- shared memory scores bit for bit like bytes on the wire (f32, f16, bf16; numpy, torch, strided, big-endian);
- every bad descriptor gets its status naming the field while good requests beside it are unaffected;
- nothing is left in /dev/shm while a client runs, after a SIGKILL of the client, or of the server;
- a server that cannot see the client's segment (its own mount namespace) makes the client send bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import threading

import ml_dtypes
import numpy as np
import pytest
import torch

from mechreward_client import (
    AsyncRewardClient,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RewardClient,
)
from mechreward_client._generated import reward_pb2
from mechreward_client._wire import ShmRef, build_score_request, encode_score_request, host_bytes, prepare_batch
from support import free_port, start_sidecar

PACKS = ["topk-saelens", "jumprelu-saelens", "direction-f32"]  # d_model 64 each: TopK SAE, JumpReLU SAE, linear


def activations(rng: np.random.Generator, tokens: int, dtype: str) -> np.ndarray:
    x = rng.normal(size=(tokens, 64)).astype(np.float32)
    return {"f32": x, "f16": x.astype(np.float16), "bf16": x.astype(ml_dtypes.bfloat16)}[dtype]


def same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.reward == y.reward or (np.isnan(x.reward) and np.isnan(y.reward))
        assert np.array_equal(x.token_rewards, y.token_rewards)
        assert x.flags == y.flags and x.verifier_disagreement == y.verifier_disagreement


def segment_of(client) -> object:
    free = client._pool._free
    assert len(free) == 1, "one registered segment after a call"
    return free[0]


# --- the encoder ---------------------------------------------------------------------------------------------


def test_encoder_writes_what_protobuf_writes():
    rng = np.random.default_rng(1)
    cases = [
        dict(seqs=[activations(rng, 3, "f32")], score_from=0, run_id=None, texts=None, answers=None, tokens=None),
        dict(seqs=[activations(rng, 200, "bf16"), activations(rng, 1, "f16")], score_from=[150, 0], run_id="run-é", texts=["ünïcode ✓", None],
             answers=[None, "42"], tokens=[[f"t{i}" if i % 3 else "" for i in range(200)], None]),
        dict(seqs=[activations(rng, 5, "f32").astype(">f4"), np.asfortranarray(activations(rng, 4, "f16"))], score_from=[4, 3], run_id="r",
             texts=["", "x" * 300], answers=None, tokens=None),
    ]
    for case in cases:
        batch = prepare_batch("topk-saelens", case["seqs"], case["score_from"], case["run_id"], case["texts"], case["answers"], case["tokens"])
        mine = encode_score_request(batch, [host_bytes(a) for a in batch.arrays])
        reference = build_score_request("topk-saelens", case["seqs"], case["score_from"], case["run_id"], case["texts"], case["answers"], case["tokens"])
        assert mine == reference.SerializeToString()
        # Descriptors instead of bytes: field 8, activations left empty (offset 0 omitted as protobuf does).
        refs = [ShmRef("mechreward-abc", 64 * i, a.nbytes) for i, a in enumerate(batch.arrays)]
        for seq, ref in zip(reference.sequences, refs):
            seq.ClearField("activations")
            seq.shm.CopyFrom(reward_pb2.SharedMemoryRef(region=ref.region, offset=ref.offset, byte_size=ref.byte_size))
        assert encode_score_request(batch, refs) == reference.SerializeToString()


# --- same results as bytes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_shared_memory_is_bit_identical_to_bytes(parity_sidecar, dtype):
    rng = np.random.default_rng({"f32": 2, "f16": 3, "bf16": 4}[dtype])
    arrays = [activations(rng, n, dtype) for n in (7, 130, 1)]
    starts = [2, 0, 0]
    shm = RewardClient(parity_sidecar.target, shared_memory=True)
    wire = RewardClient(parity_sidecar.target, shared_memory=False)
    try:
        for pack in PACKS:
            same(shm.score(pack, arrays, starts), wire.score(pack, arrays, starts))
        # torch tensors (bf16 as its own 16 bits), a strided view and a big-endian array take the same path.
        tensors = [torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16) if dtype == "bf16" else torch.from_numpy(a.copy()) for a in arrays]
        same(shm.score(PACKS[0], tensors, starts), wire.score(PACKS[0], arrays, starts))
        strided = np.ascontiguousarray(arrays[1].T).T  # same values, column-major
        assert not strided.flags.c_contiguous
        same(shm.score(PACKS[0], [strided], 0), wire.score(PACKS[0], [arrays[1]], 0))
        if dtype != "bf16":
            same(shm.score(PACKS[0], [arrays[1].astype(arrays[1].dtype.newbyteorder(">"))], 0), wire.score(PACKS[0], [arrays[1]], 0))
        assert shm.transport_counts["bytes"] == 0 and shm.transport_counts["shm"] >= 5
        assert wire.transport_counts["shm"] == 0
        assert not os.path.exists(f"/dev/shm/{segment_of(shm).key}"), "the name is unlinked right after registration"
        held = shm_regions(parity_sidecar)
        shm.close()  # unregisters: the server closes its descriptor at once
        assert shm_regions(parity_sidecar) == held - 1
    finally:
        shm.close()
        wire.close()


def test_async_submit_copies_before_returning_so_capture_can_overlap(parity_sidecar):
    rng = np.random.default_rng(5)
    batches = [[activations(rng, 64, "bf16") for _ in range(4)] for _ in range(3)]
    expected = [RewardClient(parity_sidecar.target, shared_memory=False).score(PACKS[0], b, 3) for b in batches]

    async def run(shared_memory: bool):
        async with AsyncRewardClient(parity_sidecar.target, shared_memory=shared_memory) as client:
            await client.score(PACKS[0], batches[0], 3)  # with shared memory: registers a segment first
            buffers = [[a.copy() for a in b] for b in batches]
            pending = []
            for b in buffers:
                pending.append(client.submit(PACKS[0], b, 3))
                for a in b:  # "capture the next batch" into the same buffers while this one is scored
                    a[:] = 0
            return await asyncio.gather(*pending), dict(client.transport_counts)

    for shared_memory in (True, False):
        results, counts = asyncio.run(run(shared_memory))
        for got, want in zip(results, expected):
            same(got, want)
        assert counts["shm" if shared_memory else "bytes"] >= 3, counts


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_descriptors_get_their_status_naming_the_field_and_good_requests_are_unaffected(parity_sidecar):
    rng = np.random.default_rng(6)
    good = [activations(rng, 32, "f32")]
    owner = RewardClient(parity_sidecar.target, shared_memory=True)
    other = RewardClient(parity_sidecar.target, shared_memory=True)
    expected = RewardClient(parity_sidecar.target, shared_memory=False).score(PACKS[0], good)
    owner.score(PACKS[0], good)
    segment = segment_of(owner)
    batch = prepare_batch(PACKS[0], good, 0, None)
    n = batch.arrays[0].nbytes

    def send(client, ref: ShmRef):
        return client._call("Score", encode_score_request(batch, [ref]), None)

    stop = threading.Event()
    failures: list[str] = []

    def good_traffic():
        client = RewardClient(parity_sidecar.target, shared_memory=True)
        while not stop.is_set():
            try:
                same(client.score(PACKS[0], good), expected)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                failures.append(repr(error))
        client.close()

    threads = [threading.Thread(target=good_traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        cases = [
            (lambda: send(owner, ShmRef("mechreward-not-registered", 64, n)), NotFoundError, ["MR_ERR_SHM_NOT_FOUND", "sequences[0].shm.region"]),
            (lambda: send(other, ShmRef(segment.region, 64, n)), PermissionDeniedError, ["MR_ERR_SHM_FORBIDDEN", "sequences[0].shm.region"]),
            (lambda: send(owner, ShmRef(segment.region, segment.capacity - 8, n)), BadRequestError, ["sequences[0].shm", "runs past the end"]),
            (lambda: send(owner, ShmRef(segment.region, 64, 2**64 - 1)), BadRequestError, ["sequences[0].shm.byte_size"]),
            (lambda: send(owner, ShmRef(segment.region, 64, n - 4)), BadRequestError, ["sequences[0].activations", f"expected {n} bytes"]),
            (lambda: owner._call("RegisterSharedMemory", reward_pb2.RegisterSharedMemoryRequest(name="x", key="../../etc/passwd", byte_size=64, nonce=os.urandom(16)), None),
             BadRequestError, ["key:"]),
            (lambda: owner._call("RegisterSharedMemory", reward_pb2.RegisterSharedMemoryRequest(name="x", key=segment.key, byte_size=2**63, nonce=os.urandom(16)), None),
             BadRequestError, ["byte_size:"]),
        ]
        for run, error_type, mentions in cases:
            with pytest.raises(error_type) as caught:
                run()
            for m in mentions:
                assert m in str(caught.value), f"{caught.value} should mention {m}"
        # Truncated by its owner mid-use: the server's read comes up short; it never reads past the end.
        owner._pool._free.remove(segment)
        os.ftruncate(segment.shm._fd, 100)
        with pytest.raises(BadRequestError, match=r"sequences\[0\]\.shm: region .* ended after 100 bytes.*truncated"):
            send(owner, ShmRef(segment.region, 64, n))
        segment.close()
        same(owner.score(PACKS[0], good), expected)  # a fresh segment, and the server keeps serving
    finally:
        stop.set()
        for t in threads:
            t.join()
        owner.close()
        other.close()
    assert failures == []


# --- clean-up after SIGKILL, and fall back ------------------------------------------------------------------

CHILD = r"""
import json, sys, time, numpy as np
from mechreward_client import RewardClient
client = RewardClient(sys.argv[1], shared_memory=True)
client.score("topk-saelens", [np.ones((16, 64), np.float32)])
print(json.dumps({"keys": [s.key for s in client._pool._free], "counts": client.transport_counts}), flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def one_pack(parity_dir, tmp_path_factory) -> str:
    """A packs directory with topk-saelens alone: sidecars started and killed here come up in seconds."""
    out = tmp_path_factory.mktemp("one-pack")
    shutil.copytree(os.path.join(parity_dir, "packs", "topk-saelens"), out / "topk-saelens")
    return str(out)


def shm_regions(sidecar) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/metrics", timeout=10).read().decode()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("mechreward_shm_regions ")))


def held_by(pid: int, key: str) -> bool:
    """Whether process `pid` holds a descriptor to the (deleted) segment."""
    fd_dir = f"/proc/{pid}/fd"
    return any(key in os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir) if os.path.exists(os.path.join(fd_dir, fd)))


def test_sigkill_of_the_client_or_the_server_leaves_nothing_in_dev_shm(one_pack):
    packs = one_pack
    port = free_port()
    sidecar = start_sidecar(packs, grpc_port=port)
    try:
        child = subprocess.Popen([sys.executable, "-c", CHILD, sidecar.target], stdout=subprocess.PIPE, text=True)
        report = json.loads(child.stdout.readline())
        (key,) = report["keys"]
        assert report["counts"] == {"shm": 1, "bytes": 0}
        assert not os.path.exists(f"/dev/shm/{key}"), "unlinked while both sides run"
        assert held_by(sidecar.process.pid, key)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not os.path.exists(f"/dev/shm/{key}")
        assert shm_regions(sidecar) == 1, "the server still holds the dead client's region until its lease ends"

        # Now the server dies while a live client holds a registered segment.
        client = RewardClient(sidecar.target, shared_memory=True, retries=8)
        x = [np.linspace(-1, 1, 64 * 16, dtype=np.float32).reshape(16, 64)]
        before = client.score("topk-saelens", x)
        key = segment_of(client).key
        sidecar.process.send_signal(signal.SIGKILL)
        sidecar.process.wait()
        assert not os.path.exists(f"/dev/shm/{key}")
        # A new server on the same port: the lost region is noticed (NOT_FOUND), the same bytes go on the wire,
        # and the next call registers a fresh segment.
        sidecar = start_sidecar(packs, grpc_port=port)
        same(client.score("topk-saelens", x), before)
        assert client.transport_counts == {"shm": 1, "bytes": 1}
        same(client.score("topk-saelens", x), before)
        assert client.transport_counts == {"shm": 2, "bytes": 1}
        client.close()
    finally:
        sidecar.stop()


def _own_mount_namespace() -> tuple[str, ...]:
    """A prefix that runs the sidecar with a /dev/shm of its own (a private tmpfs in a new mount namespace)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"], capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        return ()
    return ("unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh")


def test_not_co_located_falls_back_to_bytes(one_pack, parity_sidecar):
    """The server cannot see the client's segment: in its own mount namespace when this machine allows
    one, otherwise through --shm-dir pointing at an empty directory (the same ENOENT the server meets)."""
    prefix = _own_mount_namespace()
    extra = () if prefix else ("--shm-dir", tempfile.mkdtemp(prefix="not-dev-shm-"))
    sidecar = start_sidecar(one_pack, *extra, prefix=prefix)
    try:
        rng = np.random.default_rng(7)
        x = [activations(rng, 20, "bf16")]
        client = RewardClient(sidecar.target, shared_memory=True)
        same(client.score(PACKS[0], x), RewardClient(parity_sidecar.target, shared_memory=False).score(PACKS[0], x))
        same(client.score(PACKS[0], x), RewardClient(parity_sidecar.target, shared_memory=False).score(PACKS[0], x))
        assert client.transport_counts == {"shm": 0, "bytes": 2}
        assert "not co-located" in client._pool.disabled_reason
        assert client._pool._free == [], "the refused segment was closed"
        # The same holds for the async client.
        async def run():
            async with AsyncRewardClient(sidecar.target, shared_memory=True) as c:
                r = await c.score(PACKS[0], x)
                return r, dict(c.transport_counts)
        r, counts = asyncio.run(run())
        assert counts == {"shm": 0, "bytes": 1}
    finally:
        sidecar.stop()


FULL_TMPFS_CHILD = r"""
import json, sys, numpy as np
from mechreward_client import RewardClient
x = [np.full((16384, 64), 0.5, np.float32)]  # 4 MiB: more than this /dev/shm holds
client = RewardClient(sys.argv[1], shared_memory=True)
r = client.score("topk-saelens", x)
print(json.dumps({"counts": client.transport_counts, "reward": r[0].reward}), flush=True)
"""


def test_a_full_dev_shm_sends_bytes_instead_of_crashing(parity_sidecar):
    """A client whose /dev/shm is a 1 MiB tmpfs (Docker's default is 64 MB): the segment cannot be reserved,
    so that call goes as bytes; the process is not killed by SIGBUS writing into a sparse segment."""
    prefix = _own_mount_namespace()
    assert prefix, "this test needs `unshare -m` (root, as in CI) to give the client a small /dev/shm"
    script = 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$@"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-c", FULL_TMPFS_CHILD, parity_sidecar.target],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["counts"] == {"shm": 0, "bytes": 1}
    expected = RewardClient(parity_sidecar.target, shared_memory=False).score("topk-saelens", [np.full((16384, 64), 0.5, np.float32)])
    assert report["reward"] == expected[0].reward
