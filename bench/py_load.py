"""Python side of the transport benchmark: closed-loop load through the real client, ``RewardClient.score``, with
torch tensors as a trainer holds them (one [tokens, d_model] sequence per call, bf16 or f32), ``concurrency``
threads sharing one client (it is thread-safe; one channel). Prints one JSON line per concurrency.

    python bench/py_load.py --target 127.0.0.1:50051 --pack P --d-model 2560 --tokens 512 --dtype bf16 \\
        --concurrency 1 8 --seconds 5
"""
import argparse
import json
import threading
import time

import torch

from mechreward_client import RewardClient


def run(client, pack, sequences, concurrency, seconds):
    done = [0] * concurrency
    errors = []
    end = time.perf_counter() + seconds

    def worker(k):
        i = k
        while time.perf_counter() < end:
            try:
                client.score(pack, [sequences[i % len(sequences)]])
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--pack", required=True)
    p.add_argument("--d-model", type=int, required=True)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1])
    p.add_argument("--seconds", type=float, default=5)
    # bytes: activations in the message; shm: through a registered shared-memory segment (co-located only).
    p.add_argument("--transport", choices=["bytes", "shm"], default="bytes")
    a = p.parse_args()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    sequences = [(torch.rand(a.tokens, a.d_model) * 4 - 2).to(dtype) for _ in range(4)]
    client = RewardClient(a.target, timeout=60, retries=0, shared_memory=a.transport == "shm")
    # Untimed: connect (and register a segment), and check a real answer comes back.
    first = client.score(a.pack, [sequences[0]])
    assert len(first) == 1 and len(first[0].token_rewards) == a.tokens, first
    for c in a.concurrency:
        n, elapsed, errors = run(client, a.pack, sequences, c, a.seconds)
        if client.transport_counts[a.transport] == 0:
            errors = [f"no request went by {a.transport}: {dict(client.transport_counts)}", *errors]
        print(json.dumps({"concurrency": c, "requests": n, "seconds": elapsed, "tokens_per_s": n * a.tokens / elapsed, "errors": errors[:3]}), flush=True)
    client.close()


if __name__ == "__main__":
    main()
