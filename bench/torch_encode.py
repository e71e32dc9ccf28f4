"""In-process PyTorch baseline for the engine benchmark: the SAE TopK encode as a user would compute it without
mechreward (SAELens TopKSAE.encode semantics: dense feature activations), then the pack reward. Also the same
encode with PyTorch's own dynamic int8 Linear (per-channel weights, int8 activations), the fair baseline for the
`topk_int8` mode.

    python bench/torch_encode.py --threads 2   -> one JSON line per (shape, rows): median seconds per call
"""
import argparse
import json
import statistics
import time

import warnings

import torch

SHAPES = [("576x4608 k=32", 576, 4608, 32), ("2560x40960 k=128", 2560, 40960, 128)]
ROWS = [1, 64, 512, 2048]
FEATURES = 20


def encode_reward(x, w_enc, b_enc, b_dec, k, ids, weights):
    hidden_pre = (x - b_dec) @ w_enc + b_enc
    top = torch.topk(hidden_pre, k, dim=-1)
    acts = torch.zeros_like(hidden_pre).scatter_(-1, top.indices, torch.relu(top.values))
    return acts[:, ids] @ weights


def int8_encoder(w_enc, b_enc):
    """x' -> x' @ W_enc + b_enc through torch's dynamic int8 Linear (fbgemm on x86), per-channel weights."""
    linear = torch.nn.Linear(w_enc.shape[0], w_enc.shape[1])
    with torch.no_grad():
        linear.weight.copy_(w_enc.T)
        linear.bias.copy_(b_enc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao (not installed)
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig})


def encode_reward_int8(x, encoder, b_dec, k, ids, weights):
    hidden_pre = encoder(x - b_dec)
    top = torch.topk(hidden_pre, k, dim=-1)
    acts = torch.zeros_like(hidden_pre).scatter_(-1, top.indices, torch.relu(top.values))
    return acts[:, ids] @ weights


def median_seconds(fn):
    with torch.inference_mode():
        for _ in range(2):
            fn()
        times = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < 1.5 and len(times) < 50):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    for name, d_model, d_sae, k in SHAPES:
        w_enc = (torch.rand(d_model, d_sae, generator=gen) - 0.5) * (2 / d_model**0.5)
        b_enc = (torch.rand(d_sae, generator=gen) - 0.5) * 0.2
        b_dec = (torch.rand(d_model, generator=gen) - 0.5) * 0.2
        ids = torch.tensor([((i + 1) * d_sae) // (FEATURES + 1) for i in range(FEATURES)])
        weights = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(FEATURES)])
        encoder = int8_encoder(w_enc, b_enc)
        for rows in ROWS:
            x = (torch.rand(rows, d_model, generator=gen) - 0.5) * 4
            seconds = median_seconds(lambda: encode_reward(x, w_enc, b_enc, b_dec, k, ids, weights))
            seconds_int8 = median_seconds(lambda: encode_reward_int8(x, encoder, b_dec, k, ids, weights))
            print(json.dumps({"shape": name, "rows": rows, "seconds": seconds, "seconds_int8": seconds_int8,
                              "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
