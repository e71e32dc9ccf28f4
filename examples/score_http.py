"""Minimal HTTP client (standard library + numpy): scores one random sequence with a pack.

    python3 examples/score_http.py [http://127.0.0.1:8080] [smollm2-arith]

Real trainers send residual activations captured at the pack's layer; see docs/packs.md.
"""
import base64
import json
import sys
import urllib.request

import numpy as np

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
pack = sys.argv[2] if len(sys.argv) > 2 else "smollm2-arith"
packs = json.load(urllib.request.urlopen(f"{base}/v1/packs"))["packs"]
d_model = next(p["d_model"] for p in packs if p["name"] == pack)

x = np.random.default_rng(0).normal(size=(16, d_model)).astype("<f4")  # [num_tokens, d_model], little-endian
body = {"pack": pack, "sequences": [{"activations": base64.b64encode(x.tobytes()).decode(), "dtype": "f32", "num_tokens": 16, "score_from": 4}]}
request = urllib.request.Request(f"{base}/v1/score", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
result = json.load(urllib.request.urlopen(request))["results"][0]
print(json.dumps({"reward": result["reward"], "flags": result["flags"], "token_rewards": [round(v, 4) for v in result["token_rewards"]]}))
