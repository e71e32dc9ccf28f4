"""Where one Python Score call's time goes, stage by stage, on the calling thread as a trainer makes it:
argument checks (``prepare_batch``), the request bytes (``_bytes_payload``: the one copy of the activations),
the gRPC call (grpcio send, the sidecar's work, receive and protobuf parse) and ``decode_score_response``.
Prints one JSON line per dtype: milliseconds per request by stage (mean), and the process CPU per request.

    python bench/py_stages.py --target 127.0.0.1:50051 --pack P --d-model 2560 --requests 100
"""
import argparse
import json
import resource
import time

import torch

from mechreward_client import RewardClient
from mechreward_client._wire import decode_score_response, prepare_batch
from py_load import add_request_args, bench_sequences  # bench/ is sys.path[0] when run as a script


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser()
    add_request_args(p)
    p.add_argument("--requests", type=int, default=100)
    a = p.parse_args()
    client = RewardClient(a.target, timeout=60, retries=0, shared_memory=False)
    for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        sequences = bench_sequences(a.tokens, a.d_model, dtype)
        client.score(a.pack, [sequences[0]])  # untimed: connect
        stub = client._service()
        ns = {"prepare": 0, "encode": 0, "call": 0, "decode": 0}
        start_cpu = cpu_seconds()
        for i in range(a.requests):
            t0 = time.perf_counter_ns()
            batch = prepare_batch(a.pack, [sequences[i % 4]], None, None)
            t1 = time.perf_counter_ns()
            payload = client._bytes_payload(batch)
            t2 = time.perf_counter_ns()
            response = stub.Score(payload, timeout=60, metadata=client._metadata(f"stages-{i}"))
            t3 = time.perf_counter_ns()
            decode_score_response(response, 1)
            t4 = time.perf_counter_ns()
            for stage, d in zip(ns, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                ns[stage] += d
        ms = {stage: round(v / a.requests / 1e6, 3) for stage, v in ns.items()}
        print(json.dumps({"dtype": name, "ms_per_request": ms, "cpu_ms_per_request": round(1000 * (cpu_seconds() - start_cpu) / a.requests, 2)}), flush=True)
    client.close()


if __name__ == "__main__":
    main()
