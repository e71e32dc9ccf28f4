"""docker/test.sh's client: a trainer-like loop through the Python client against the container(s).

    python docker/smoke_client.py TARGET [--steps N] [--run-id ID] [--get-run-on host:port,...]

Scores N steps of 4 random [12, 576] float32 sequences with the bundled pack (smollm2-arith, d_model 576)
through TARGET (any gRPC target: one container, or the compose replicas' ipv4: list) with MECHREWARD_AUTH_TOKEN,
checks that a call without the token is refused, and, with --get-run-on, that GetRun on every listed replica
reports the whole run. Exits 1 with the reason on any failure.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from mechreward_client import AuthenticationError, RewardClient

PACK = "smollm2-arith"
D_MODEL = 576
BATCH = 4
TOKENS = 12
PROMPT = 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--get-run-on", default="")
    args = parser.parse_args()

    try:
        RewardClient(args.target, token="", retries=0).list_packs()
        print("smoke: a call without the token was served", file=sys.stderr)
        return 1
    except AuthenticationError:
        pass

    rng = np.random.default_rng(0)
    with RewardClient(args.target, timeout=30) as client:
        for _ in range(args.steps):
            batch = [rng.normal(size=(TOKENS, D_MODEL)).astype(np.float32) for _ in range(BATCH)]
            results = client.score(PACK, batch, score_from=PROMPT, run_id=args.run_id)
            if len(results) != BATCH or any(len(r.token_rewards) != TOKENS or not math.isfinite(r.reward) for r in results):
                print(f"smoke: malformed Score answer {results}", file=sys.stderr)
                return 1
    sent = args.steps * BATCH
    for replica in filter(None, args.get_run_on.split(",")):
        with RewardClient(replica, timeout=30) as one:
            sequences = one.get_run(args.run_id).sequences
        if sequences != sent:
            print(f"smoke: GetRun on {replica} shows {sequences} sequences, {sent} were scored", file=sys.stderr)
            return 1
    print(f"smoke: {args.steps} Score calls through {args.target} OK" + (f"; GetRun on every replica shows {sent}" if args.get_run_on else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
