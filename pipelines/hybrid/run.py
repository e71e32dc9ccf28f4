"""SAE on a hybrid model, end to end: residuals of a Qwen3.5 (Gated DeltaNet) layer -> TopK SAE trained by
EleutherAI sparsify -> `mechreward pack build` (effect-size, stage gate 1) -> scored through the real server.

Toy size (the only size this machine can run; no hybrid checkpoint ships in a registry package): a tiny random
Qwen3.5 (hidden 64, 4 layers, GDN + gated attention) saved to disk and loaded back like a real checkpoint, a
word-level tokenizer, and a synthetic labelled task: a response is "correct" when most of its words are
even-numbered (w0, w2, ...). The label is a function of the tokens, so G1 here checks the plumbing, not a
finding about a model. See README.md.

    python pipelines/hybrid/run.py --out DIR      # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LAYER = 1  # a full-attention layer reading the output of a Gated DeltaNet layer
PACK = "toy-qwen3_5-l1"
WORDS = [f"w{i}" for i in range(61)]
VOCAB = ["<pad>", "<eos>", "<unk>"] + WORDS


def toy_model_and_tokenizer(model_dir: str, seed: int):
    """A tiny random Qwen3.5 and a word-level tokenizer, saved as a checkpoint folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        vocab_size=len(VOCAB), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_conv_kernel_dim=4,
        linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True, max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(config)
    with torch.no_grad():  # unit-scale embeddings: an O(1) residual stream instead of the init's 0.02
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    model.save_pretrained(model_dir)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.save_pretrained(os.path.join(model_dir, "tokenizer"))


def task(count: int, rng: np.random.Generator) -> list[dict]:
    """Prompts of 4 words, responses of 6: correct when at least 4 of the 6 are even-numbered words."""
    items = []
    for i in range(count):
        prompt = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 4))
        even_share = rng.choice([0.2, 0.5, 0.8])
        picks = [int(rng.integers(0, 31)) * 2 if rng.random() < even_share else int(rng.integers(0, 30)) * 2 + 1 for _ in range(6)]
        items.append({"id": f"r{i}", "prompt": prompt, "response": " ".join(WORDS[j] for j in picks),
                      "correct": int(sum(j % 2 == 0 for j in picks) >= 4)})
    return items


def train_sae(model, tokenizer, work: str, seed: int, sequences: int, k: int, latents: int) -> str:
    """sparsify's own Trainer on the model's layers.LAYER output; returns the saved SAE folder."""
    from datasets import Dataset
    from sparsify import SaeConfig, Trainer, TrainConfig

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, len(VOCAB), size=(sequences, 16)).tolist()  # word tokens only, no padding
    dataset = Dataset.from_dict({"input_ids": ids}).with_format("torch")
    cfg = TrainConfig(SaeConfig(k=k, num_latents=latents), batch_size=16, hookpoints=[f"layers.{LAYER}"],
                      log_to_wandb=False, save_dir=os.path.join(work, "sparsify"), run_name="toy",
                      save_every=10**9, init_seeds=[seed])
    Trainer(cfg, dataset, model).fit()
    return os.path.join(work, "sparsify", "toy", f"layers.{LAYER}")


def write_activation_file(path: str, model, tokenizer, items: list[dict]) -> None:
    """The held-out data format (docs/packs.md): prompt + response residuals after LAYER, concatenated."""
    from safetensors.numpy import save_file

    from mechreward_client.capture import capture_residual, pad_right

    sequences, prompt_lengths = [], []
    for item in items:
        prompt_ids = tokenizer(text=item["prompt"])["input_ids"]
        sequences.append(prompt_ids + tokenizer(text=item["response"])["input_ids"])
        prompt_lengths.append(len(prompt_ids))
    rows, responses, offset = [], [], 0
    for start in range(0, len(sequences), 32):
        ids, mask = pad_right(sequences[start:start + 32], 0)
        rows.extend(capture_residual(model, ids, mask, LAYER))  # the padding guard runs on the first batch
    for item, seq, prompt_len, acts in zip(items, sequences, prompt_lengths, rows):
        responses.append({"id": item["id"], "offset": offset, "num_tokens": len(seq), "score_from": prompt_len,
                          "correct": item["correct"]})
        offset += len(seq)
    activations = torch.cat(rows).float().numpy()
    save_file({"activations": activations}, path, metadata={"responses": json.dumps(responses)})


def mechreward(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", os.path.join(REPO, "bin", "mechreward.js"), *args], cwd=REPO,
                          capture_output=True, text=True)


def score_through_server(packs_dir: str, heldout: str, sae_dir: str, count: int) -> dict:
    """Serve the built pack (validated: no --allow-unvalidated), score held-out responses over gRPC, and compare
    with sparsify's own encode of the same rows, float64 weighted sum of the pack's features."""
    from safetensors import safe_open
    from sparsify import SparseCoder

    from mechreward_client import RewardClient

    sys.path.insert(0, os.path.join(REPO, "pipelines", "g2"))
    from sidecar import Sidecar  # the real `mechreward serve` on free loopback ports, waited for readiness

    with open(os.path.join(packs_dir, PACK, "pack.json")) as f:
        features = [(f_["id"], f_["weight"]) for f_ in json.load(f)["features"]]
    with safe_open(heldout, framework="pt") as f:
        acts = f.get_tensor("activations")
        responses = json.loads(f.metadata()["responses"])[:count]
    sae = SparseCoder.load_from_disk(sae_dir)
    worst = 0.0
    # No --allow-unvalidated: serve refuses a pack without a passing G1 block.
    with Sidecar(f"node {os.path.join(REPO, 'bin', 'mechreward.js')} serve --packs {packs_dir}", cwd=REPO) as sidecar:
        client = RewardClient(sidecar.target)
        (info,) = [p for p in client.list_packs() if p.name == PACK]
        for r in responses:
            x = acts[r["offset"]:r["offset"] + r["num_tokens"]]
            served = client.score(PACK, [x.numpy()], score_from=r["score_from"])[0]
            with torch.no_grad():
                out = sae.encode(x.float())
            dense = torch.zeros(x.shape[0], sae.num_latents, dtype=torch.float64)
            dense.scatter_(1, out.top_indices, out.top_acts.double())
            token = sum(w * dense[:, i] for i, w in features)
            expected = float(token[r["score_from"]:].mean())
            worst = max(worst, abs(served.reward - expected) / max(1.0, abs(expected)))
        unvalidated = any("unvalidated" in line for line in sidecar.lines)
    return {"responses_scored": len(responses), "worst_relative_diff_vs_sparsify_encode": worst,
            "served_layer": info.layer, "served_d_sae": info.d_sae, "unvalidated_warning": unvalidated}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="work folder; the pack lands in OUT/packs/" + PACK)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sae-sequences", type=int, default=2048, help="16-token sequences sparsify trains on")
    parser.add_argument("--responses", type=int, default=400, help="labelled responses, split 50/50 discovery/held-out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings, started = {}, time.monotonic()
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    model_dir, packs_dir = os.path.join(out, "model"), os.path.join(out, "packs")
    pack_dir = os.path.join(packs_dir, PACK)
    os.makedirs(pack_dir)

    toy_model_and_tokenizer(model_dir, args.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"), local_files_only=True)
    timings["model_s"] = time.monotonic() - started

    t = time.monotonic()
    trained = train_sae(model, tokenizer, out, args.seed, args.sae_sequences, k=8, latents=256)
    sae_dir = os.path.join(pack_dir, "sae", f"layers.{LAYER}")  # the folder name carries the hook layer
    os.makedirs(sae_dir)
    for name in ("cfg.json", "sae.safetensors"):
        shutil.copy(os.path.join(trained, name), sae_dir)
    timings["sparsify_s"] = time.monotonic() - t

    t = time.monotonic()
    items = task(args.responses, np.random.default_rng(args.seed + 1))
    half = len(items) // 2
    discovery, heldout = os.path.join(out, "discovery.safetensors"), os.path.join(pack_dir, "heldout.safetensors")
    write_activation_file(discovery, model, tokenizer, items[:half])
    write_activation_file(heldout, model, tokenizer, items[half:])
    timings["capture_s"] = time.monotonic() - t

    t = time.monotonic()
    built = mechreward("pack", "build", "--method", "effect-size", "--data", discovery, "--heldout", heldout,
                       "--sae", sae_dir, "--out", pack_dir, "--model", "toy-qwen3_5 (tiny random, seed 0)",
                       "--layer", str(LAYER), "--top", "8", "--json")
    timings["pack_build_s"] = time.monotonic() - t
    if built.returncode != 0:
        print(built.stdout, built.stderr, file=sys.stderr)
        return 1
    with open(os.path.join(pack_dir, "pack.json")) as f:
        validation = json.load(f)["validation"]

    t = time.monotonic()
    served = score_through_server(packs_dir, heldout, sae_dir, count=40)
    timings["serve_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - started
    report = {"pack": pack_dir, "layer": LAYER, "g1": validation, "server": served,
              "timings": {k: round(v, 1) for k, v in timings.items()}}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
