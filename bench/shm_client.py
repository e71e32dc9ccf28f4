"""Python client of bench/shm.ts: closed-loop RewardClient.score calls of one bf16 torch tensor per call, as
bytes on the wire (shared_memory=False) or through shared memory (True), from `concurrency` threads sharing
one client. Prints one JSON line.

    python bench/shm_client.py TARGET PACK D_MODEL TOKENS CONCURRENCY SECONDS bytes|shm
"""

from __future__ import annotations

import json
import sys
import threading
import time

import torch

from mechreward_client import RewardClient


def main() -> None:
    target, pack, d_model, tokens, concurrency, seconds, mode = sys.argv[1:8]
    d_model, tokens, concurrency, seconds = int(d_model), int(tokens), int(concurrency), float(seconds)
    torch.manual_seed(0)
    payloads = [torch.randn(tokens, d_model).mul(2).to(torch.bfloat16) for _ in range(4)]
    client = RewardClient(target, timeout=60, shared_memory=(mode == "shm"))
    client.score(pack, [payloads[0]])  # connect (and register a segment) outside the timed loop
    done = [0] * concurrency
    end = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        i = slot
        while time.perf_counter() < end:
            client.score(pack, [payloads[i % len(payloads)]])
            done[slot] += 1
            i += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(s,)) for s in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    counts = dict(client.transport_counts)
    client.close()
    print(json.dumps({"mode": mode, "concurrency": concurrency, "requests": sum(done), "seconds": elapsed,
                      "tokens_per_s": sum(done) * tokens / elapsed, "transport_counts": counts}))


if __name__ == "__main__":
    main()
