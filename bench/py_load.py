"""Python side of the transport benchmark: closed-loop load through the real client, ``RewardClient.score``, with
torch tensors as a trainer holds them (one [tokens, d_model] sequence per call, bf16 or f32), ``concurrency``
threads sharing one client (it is thread-safe; one channel). Prints one JSON line per concurrency.

    python bench/py_load.py --target 127.0.0.1:50051 --pack P --d-model 2560 --tokens 512 --dtype bf16 \\
        --concurrency 1 8 --seconds 5

``--transport echo`` is grpcio's own floor for the same requests, the Python twin of the Node load client's
``--echo``: the client's encoder writes each Score request once, before the clock starts, and the bytes go
to the bare echo server (bench/echo-server.ts) on a channel with the client's options, replies not decoded.
"""
import argparse
import json
import threading
import time

import grpc
import torch

from mechreward_client import RewardClient
from mechreward_client._channel import channel_options
from mechreward_client._client import _CHANNEL_OPTIONS
from mechreward_client._wire import prepare_batch

# bench/shapes.ts ECHO_METHOD
ECHO_METHOD = "/mechreward.bench.Echo/Echo"


def run(call, items, concurrency, seconds):
    """``call(item)`` in a closed loop from ``concurrency`` threads, each cycling through ``items``."""
    done = [0] * concurrency
    errors = []
    end = time.perf_counter() + seconds

    def worker(k):
        i = k
        while time.perf_counter() < end:
            try:
                call(items[i % len(items)])
                done[k] += 1
            except Exception as e:  # noqa: BLE001 - reported, not raised: the benchmark counts failures
                errors.append(repr(e))
                return
            i += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.perf_counter() - start, errors


def add_request_args(p):
    """The sidecar, the pack and the request shape: the arguments every Python bench script takes."""
    p.add_argument("--target", required=True)
    p.add_argument("--pack", required=True)
    p.add_argument("--d-model", type=int, required=True)
    p.add_argument("--tokens", type=int, default=512)


def bench_sequences(tokens, d_model, dtype):
    """The four seeded random activations each request cycles through (also bench/py_stages.py's)."""
    torch.manual_seed(0)
    return [(torch.rand(tokens, d_model) * 4 - 2).to(dtype) for _ in range(4)]


def main():
    p = argparse.ArgumentParser()
    add_request_args(p)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1])
    p.add_argument("--seconds", type=float, default=5)
    # bytes: activations in the message; shm: through a registered shared-memory segment (co-located only);
    # echo: the same request bytes, pre-encoded, to the bare echo server (see above).
    p.add_argument("--transport", choices=["bytes", "shm", "echo"], default="bytes")
    a = p.parse_args()
    sequences = bench_sequences(a.tokens, a.d_model, torch.bfloat16 if a.dtype == "bf16" else torch.float32)
    if a.transport == "echo":
        echo_rows(a, sequences)
        return
    client = RewardClient(a.target, timeout=60, retries=0, shared_memory=a.transport == "shm")
    # Untimed: connect (and register a segment), and check a real answer comes back.
    first = client.score(a.pack, [sequences[0]])
    assert len(first) == 1 and len(first[0].token_rewards) == a.tokens, first
    for c in a.concurrency:
        n, elapsed, errors = run(lambda s: client.score(a.pack, [s]), sequences, c, a.seconds)
        if client.transport_counts[a.transport] == 0:
            errors = [f"no request went by {a.transport}: {dict(client.transport_counts)}", *errors]
        print(json.dumps({"concurrency": c, "requests": n, "seconds": elapsed, "tokens_per_s": n * a.tokens / elapsed, "errors": errors[:3]}), flush=True)
    client.close()


def echo_rows(a, sequences):
    requests = [RewardClient._bytes_payload(prepare_batch(a.pack, [s], None, None)) for s in sequences]
    channel = grpc.insecure_channel(a.target, options=channel_options(a.target, _CHANNEL_OPTIONS))
    echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
    echo(requests[0], timeout=60)  # untimed: connect
    for c in a.concurrency:
        n, elapsed, errors = run(lambda request: echo(request, timeout=60), requests, c, a.seconds)
        print(json.dumps({"concurrency": c, "requests": n, "seconds": elapsed, "tokens_per_s": n * a.tokens / elapsed, "errors": errors[:3]}), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
