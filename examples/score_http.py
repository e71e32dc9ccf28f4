"""HTTP client (standard library + numpy): scores real residual activations (the bundled pack's held-out
answers) under a run_id and prints each reward beside whether the answer was right; then random activations,
to show what they get instead.

    python3 examples/score_http.py [http://127.0.0.1:8080] [smollm2-arith] [count]

Then open http://127.0.0.1:8080/monitor?run=example-http. A trainer sends the residuals of its own rollouts,
captured at the pack's layer (python-shims/mechreward_client/capture.py does it for TRL, verl and OpenRLHF).
"""
import base64
import json
import os
import struct
import sys
import urllib.request

import numpy as np

RUN_ID = "example-http"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
pack = sys.argv[2] if len(sys.argv) > 2 else "smollm2-arith"
count = int(sys.argv[3]) if len(sys.argv) > 3 else 8


def held_out(pack_name: str) -> list[dict]:
    """The held-out answers the pack was validated on (pack.json validation.data): a safetensors file of float16
    rows [rows, d_model] ("activations") whose metadata lists each response's rows, first response row
    (score_from) and correctness. Read by hand (8-byte header length, JSON header, raw little-endian tensor)."""
    pack_dir = os.path.join(ROOT, "packs", pack_name)
    with open(os.path.join(pack_dir, "pack.json"), encoding="utf-8") as f:
        path = os.path.join(pack_dir, json.load(f)["validation"]["data"])
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensor = header["activations"]
    begin, end = tensor["data_offsets"]
    rows = np.frombuffer(data[begin:end], dtype="<f2").reshape(tensor["shape"])
    responses = json.loads(header["__metadata__"]["responses"])
    return [dict(r, activations=rows[r["offset"] : r["offset"] + r["num_tokens"]]) for r in responses]


def score(sequences: list[dict], run_id: str | None) -> list[dict]:
    body = {"pack": pack, "sequences": sequences}
    if run_id:
        body["run_id"] = run_id
    request = urllib.request.Request(f"{base}/v1/score", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(request))["results"]


def wire(acts: np.ndarray, score_from: int, dtype: str) -> dict:
    # [num_tokens, d_model] little-endian, row-major, base64 in JSON (msgpack takes the bytes as they are).
    return {"activations": base64.b64encode(acts.tobytes()).decode(), "dtype": dtype, "num_tokens": len(acts), "score_from": score_from}


responses = held_out(pack)[:count]
results = score([dict(wire(r["activations"], r["score_from"], "f16"), expected_answer=str(r["expected"])) for r in responses], RUN_ID)
print(f"{len(responses)} held-out answers, scored with {pack} (run_id {RUN_ID}):")
for r, res in zip(responses, results):
    rewarded = sum(v != 0 for v in res["token_rewards"])
    flags = ", ".join(f["name"] for f in res["flags"]) or "none"
    print(f"  {'right' if r['correct'] else 'wrong'}  reward {res['reward']:8.4f}  {rewarded} of {r['num_tokens'] - r['score_from']} response tokens rewarded  flags: {flags}")
for label, want in (("right", 1), ("wrong", 0)):
    rewards = [res["reward"] for r, res in zip(responses, results) if r["correct"] == want]
    print(f"mean reward, {label} answers: {sum(rewards) / max(1, len(rewards)):.4f}")

# Random activations (no run_id, so the example run stays clean): the SAE's TopK picks a random handful of its
# features for each row, almost never the pack's, so every token reward is 0; and the SAE cannot reconstruct
# noise, so its reconstruction error far exceeds the pack's calibrated bound: off_distribution.
d_model = responses[0]["activations"].shape[1]
(noise,) = score([wire(np.random.default_rng(0).normal(size=(16, d_model)).astype("<f4"), 4, "f32")], None)
print(f"random activations instead: reward {noise['reward']}, flags: {'; '.join(f['name'] + ' (' + f['reason'] + ')' for f in noise['flags']) or 'none'}")
print(f"the run on the monitor page: {base}/monitor?run={RUN_ID}")
