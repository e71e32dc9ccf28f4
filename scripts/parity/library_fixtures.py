"""SAEs built with SAELens 6.54.12's and sparsify 1.3.3's own classes and saved with their own save methods,
with the libraries' own float64 encode of every input token as the expected answer.

Used by python-shims/tests/test_sae_libraries.py (which serves every "exact" SAE through the real sidecar and
asks `mechreward sae inspect` about every "refused" one). Run alone, it writes the tree and a summary:

    python-shims/.venv/bin/python scripts/parity/library_fixtures.py --out DIR

Random weights at small sizes (d_in 32, d_sae 128, k 8), decoder rows with norms in [0.5, 2], non-zero
biases, JumpReLU thresholds, and per SAE a pair of pack features with identical encoder columns (an exact
tie). Rows: random (scale 0.5 to 8), high norm (x 1e3), all-negative pre-activations (the encoder input is
-b_dec-shifted to give h = b_enc < 0), and near-ties at the k-th value of TopK SAEs, placed by bisection
along one encoder column with relative gaps from 1e-7 to 1e-3. The expected values come from the library
object loaded back from disk with `dtype float64` (SAELens `SAE.load_from_disk(dtype="float64")`, sparsify
`SparseCoder.load_from_disk(...).double()`), never from this project's code.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from sae_lens import SAE
from sae_lens.saes import (
    AbsTopKSAE, AbsTopKSAEConfig, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, GatedSAE, GatedSAEConfig,
    GatedTrainingSAE, GatedTrainingSAEConfig,
    JumpReLUSAE, JumpReLUSAEConfig, JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig, JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig, JumpReLUTranscoder, JumpReLUTranscoderConfig, MatchingPursuitSAE,
    MatchingPursuitSAEConfig, MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig, SkipTranscoder, SkipTranscoderConfig, StandardSAE, StandardSAEConfig,
    StandardTrainingSAE, StandardTrainingSAEConfig, TemporalSAE, TemporalSAEConfig, TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig,
    Transcoder, TranscoderConfig,
)
from sae_lens.saes.sae import SAEMetadata
from sparsify import SparseCoder, SparseCoderConfig

D_IN = 32
D_SAE = 128
K = 8
TIE_A, TIE_B = 17, 90  # identical encoder columns: an exact tie on every token
HOOK = "blocks.3.hook_resid_post"
SEQUENCES = 3
TOKENS = 10


@dataclass
class Variant:
    name: str
    library: str  # "saelens" | "sparsify"
    make: Callable[[], Any]  # returns the library object
    save: str = "save_model"  # SAELens: save_model | save_inference_model; sparsify: save_to_disk
    expect: str = "exact"  # or "refused"
    refusal: str = ""  # a substring the loader's error must contain (the field or value it names)
    cfg_edit: Callable[[dict], None] | None = None
    dtype: torch.dtype = torch.float32
    topk: bool = False  # the encode ranks pre-activations (ties at the k-th value matter)
    rank_abs: bool = False  # AbsTopK ranks |h| and keeps the sign
    normalised: bool = False
    hook_z: bool = False
    note: str = ""
    features: list[int] = field(default_factory=list)


def _meta(hook: str = HOOK) -> SAEMetadata:
    return SAEMetadata(hook_name=hook, model_name="synthetic")


def _saelens_variants() -> list[Variant]:
    m = _meta
    v: list[Variant] = []
    v.append(Variant("sl-topk-rescale", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True, metadata=m())), topk=True))
    v.append(Variant("sl-topk-nobdec-bf16", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=False, dtype="bfloat16", metadata=m())), topk=True, dtype=torch.bfloat16))
    v.append(Variant("sl-topk-cnr-f16", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, normalize_activations="constant_norm_rescale", dtype="float16", metadata=m())), topk=True, normalised=True, dtype=torch.float16))
    v.append(Variant("sl-topk-layernorm", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, normalize_activations="layer_norm", rescale_acts_by_decoder_norm=True, metadata=m())), topk=True, normalised=True))
    v.append(Variant("sl-topk-f64", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype="float64", metadata=m())), topk=True, dtype=torch.float64, note="float64 weights, narrowed to float32"))
    v.append(Variant("sl-standard", "saelens", lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m()))))

    def add_rescale(cfg: dict) -> None:
        cfg["rescale_acts_by_decoder_norm"] = True  # SAELens drops it: StandardSAEConfig has no such field

    v.append(Variant("sl-standard-rescale-ignored", "saelens", lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), cfg_edit=add_rescale, note="rescale_acts_by_decoder_norm in a standard cfg (ignored, as SAELens does)"))
    v.append(Variant("sl-standard-hookz", "saelens", lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, reshape_activations="hook_z", metadata=m("blocks.3.attn.hook_z"))), hook_z=True))
    v.append(Variant("sl-jumprelu-layernorm", "saelens", lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, normalize_activations="layer_norm", metadata=m())), normalised=True))
    v.append(Variant("sl-jumprelu-f16", "saelens", lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype="float16", metadata=m())), dtype=torch.float16))
    v.append(Variant("sl-transcoder", "saelens", lambda: Transcoder(TranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=24, apply_b_dec_to_input=False, metadata=m()))))
    v.append(Variant("sl-skip-transcoder", "saelens", lambda: SkipTranscoder(SkipTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=24, apply_b_dec_to_input=False, metadata=m()))))
    v.append(Variant("sl-jumprelu-transcoder", "saelens", lambda: JumpReLUTranscoder(JumpReLUTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_IN, apply_b_dec_to_input=False, metadata=m()))))
    v.append(Variant("sl-jumprelu-skip-transcoder", "saelens", lambda: JumpReLUSkipTranscoder(JumpReLUSkipTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_IN, apply_b_dec_to_input=False, metadata=m()))))
    # Training SAEs: save_model writes the training cfg (training fields, training architecture details in
    # metadata); save_inference_model folds what inference does not need.
    v.append(Variant("sl-train-topk-save", "saelens", lambda: TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=m())), topk=True, note="TopKTrainingSAE.save_model (rescale true by default)"))
    v.append(Variant("sl-train-topk-inference", "saelens", lambda: TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=m())), save="save_inference_model", topk=True, note="decoder norms folded into W_enc, b_enc"))
    v.append(Variant("sl-train-standard", "saelens", lambda: StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m()))))
    v.append(Variant("sl-train-jumprelu", "saelens", lambda: JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), save="save_inference_model"))
    v.append(Variant("sl-train-jumprelu-save", "saelens", lambda: JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), note="JumpReLUTrainingSAE.save_model"))
    v.append(Variant("sl-train-gated-save", "saelens", lambda: GatedTrainingSAE(GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), note="GatedTrainingSAE.save_model"))
    v.append(Variant("sl-batchtopk-inference", "saelens", lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=m())), save="save_inference_model", note="saved as JumpReLU"))
    v.append(Variant("sl-matryoshka-inference", "saelens", lambda: MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, matryoshka_widths=[32, D_SAE], metadata=m())), save="save_inference_model", note="saved as JumpReLU"))

    def pre6_topk(cfg: dict) -> None:
        # The pre-6.0 form: no version, no architecture, activation_fn_str "topk" with activation_fn_kwargs.k.
        for key in ("architecture", "k", "sae_lens_version", "sae_lens_training_version", "reshape_activations", "rescale_acts_by_decoder_norm"):
            cfg.pop(key, None)
        meta = cfg.pop("metadata")
        cfg["hook_point"] = meta["hook_name"]
        cfg["activation_fn_str"] = "topk"
        cfg["activation_fn_kwargs"] = {"k": K}

    v.append(Variant("sl-pre6-topk", "saelens", lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=m())), cfg_edit=pre6_topk, topk=True, note="pre-6.0 cfg: activation_fn_str topk + activation_fn_kwargs.k"))
    # Refused, each by name.
    v.append(Variant("sl-gated", "saelens", lambda: GatedSAE(GatedSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m()))))
    v.append(Variant("sl-gated-layernorm-bf16", "saelens", lambda: GatedSAE(GatedSAEConfig(d_in=D_IN, d_sae=D_SAE, normalize_activations="layer_norm", dtype="bfloat16", metadata=m())), normalised=True, dtype=torch.bfloat16))
    v.append(Variant("sl-abstopk-rescale", "saelens", lambda: AbsTopKSAE(AbsTopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True, metadata=m())), topk=True, rank_abs=True))
    v.append(Variant("sl-temporal", "saelens", lambda: TemporalSAE(TemporalSAEConfig(d_in=D_IN, d_sae=D_SAE, n_heads=2, bottleneck_factor=2, metadata=m())), expect="refused", refusal='architecture "temporal"'))
    v.append(Variant("sl-matching-pursuit", "saelens", lambda: MatchingPursuitSAE(MatchingPursuitSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), expect="refused", refusal='architecture "matching_pursuit"'))
    v.append(Variant("sl-train-batchtopk-save", "saelens", lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=m())), expect="refused", refusal='architecture "batchtopk"'))

    def whiten(cfg: dict) -> None:
        cfg["normalize_activations"] = "covariance_whitening"

    def unknown_field(cfg: dict) -> None:
        cfg["my_new_encode_option"] = 3

    v.append(Variant("sl-covariance-whitening", "saelens", lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), cfg_edit=whiten, expect="refused", refusal='normalize_activations "covariance_whitening"'))
    v.append(Variant("sl-unknown-field", "saelens", lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=m())), cfg_edit=unknown_field, expect="refused", refusal="field my_new_encode_option"))
    return v


def _sparsify_variants() -> list[Variant]:
    def sc(**kw: Any) -> Callable[[], SparseCoder]:
        return lambda: SparseCoder(D_IN, SparseCoderConfig(**kw))

    return [
        Variant("sp-topk", "sparsify", sc(num_latents=D_SAE, k=K), save="save_to_disk", topk=True),
        Variant("sp-expansion", "sparsify", sc(expansion_factor=4, k=K), save="save_to_disk", topk=True),
        Variant("sp-transcode", "sparsify", sc(num_latents=D_SAE, k=K, transcode=True), save="save_to_disk", topk=True),
        Variant("sp-skip", "sparsify", sc(num_latents=D_SAE, k=K, skip_connection=True), save="save_to_disk", topk=True),
        Variant("sp-multitopk-bf16", "sparsify", lambda: SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K, multi_topk=True), dtype=torch.bfloat16), save="save_to_disk", topk=True, dtype=torch.bfloat16),
        Variant("sp-unknown-field", "sparsify", sc(num_latents=D_SAE, k=K), save="save_to_disk", cfg_edit=lambda cfg: cfg.update(normalize_encoder=True), expect="refused", refusal="field normalize_encoder"),
        Variant("sp-groupmax", "sparsify", sc(num_latents=D_SAE, k=K, activation="groupmax"), save="save_to_disk"),
        Variant("sp-groupmax-transcode", "sparsify", sc(num_latents=D_SAE, k=K, activation="groupmax", transcode=True), save="save_to_disk"),
    ]


def variants() -> list[Variant]:
    return _saelens_variants() + _sparsify_variants()


# ---------------------------------------------------------------------------------------------- weights

@torch.no_grad()
def randomise(obj: Any, rng: np.random.Generator) -> None:
    """Random weights in place: every parameter and the BatchTopK threshold buffer, with the tie pair."""
    def t(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(a).to(like.dtype)

    for name, p in obj.named_parameters():
        shape = tuple(p.shape)
        if name in ("W_enc",):
            a = rng.normal(0, 0.3, shape)
            a[:, TIE_B] = a[:, TIE_A]
        elif name == "encoder.weight":
            a = rng.normal(0, 0.3, shape)
            a[TIE_B] = a[TIE_A]
        elif name in ("b_enc", "encoder.bias", "b_gate", "b_mag"):
            # All negative, so x = b_dec (after the encoder's shift) gives an all-negative row.
            a = -np.abs(rng.normal(0, 0.1, shape)) - 0.05
            a[TIE_B] = a[TIE_A]
        elif name == "W_dec":
            a = rng.normal(0, 1, shape)
            a /= np.linalg.norm(a, axis=1, keepdims=True)
            a *= rng.uniform(0.5, 2.0, (shape[0], 1))
            a[TIE_B] = a[TIE_A]
        elif name == "threshold":
            a = rng.uniform(0.05, 0.5, shape)
            a[TIE_B] = a[TIE_A]
        else:  # b_dec, W_skip, gated b_gate / b_mag / r_mag
            a = rng.normal(0, 0.2, shape)
        p.copy_(t(a, p))
    if hasattr(obj, "topk_threshold"):
        obj.topk_threshold = torch.tensor(0.3, dtype=torch.double)


def save(variant: Variant, obj: Any, sae_dir: str) -> None:
    getattr(obj, variant.save)(sae_dir)
    if variant.cfg_edit:
        path = os.path.join(sae_dir, "cfg.json")
        with open(path) as f:
            cfg = json.load(f)
        variant.cfg_edit(cfg)
        with open(path, "w") as f:
            json.dump(cfg, f)


def load_reference(variant: Variant, sae_dir: str) -> Any:
    """The library's own reader on the saved folder, in float64."""
    ref = SAE.load_from_disk(sae_dir, dtype="float64") if variant.library == "saelens" else SparseCoder.load_from_disk(sae_dir).double()
    return ref.requires_grad_(False).eval()


# ---------------------------------------------------------------------------------------------- encode

@torch.no_grad()
def library_encode(variant: Variant, ref: Any, x: np.ndarray) -> np.ndarray:
    """The library's encode() of float64 rows [T, d_in] → dense [T, d_sae] float64."""
    xt = torch.from_numpy(x.astype(np.float64))
    if variant.library == "saelens":
        if variant.hook_z:
            xt = xt.reshape(x.shape[0], 4, D_IN // 4)
        return ref.encode(xt).numpy()
    out = ref.encode(xt)
    dense = torch.zeros(x.shape[0], ref.num_latents, dtype=torch.float64)
    dense.scatter_(-1, out.top_indices, out.top_acts)
    return dense.numpy()


@torch.no_grad()
def pre_activations(variant: Variant, ref: Any, x: np.ndarray) -> np.ndarray:
    """What a TopK encode ranks, from the library object's tensors (used to place and classify ties)."""
    xt = torch.from_numpy(x.astype(np.float64))
    if variant.library == "saelens":
        h = ref.process_sae_in(xt) @ ref.W_enc + ref.b_enc
        if getattr(ref.cfg, "rescale_acts_by_decoder_norm", False):
            h = h * ref.W_dec.norm(dim=-1)
        return h.numpy()
    if not ref.cfg.transcode:
        xt = xt - ref.b_dec
    return (xt @ ref.encoder.weight.T + ref.encoder.bias).numpy()


def rank_key(variant: Variant, h: np.ndarray) -> np.ndarray:
    """What the encode sorts: h, or |h| for AbsTopK."""
    return np.abs(h) if variant.rank_abs else h


def kth_gap(h: np.ndarray, k: int) -> tuple[float, float]:
    """(k-th largest, relative gap to the (k+1)-th) of one row of ranking keys."""
    s = np.sort(h)[::-1]
    return s[k - 1], (s[k - 1] - s[k]) / max(abs(s[k - 1]), 1e-12)


# ---------------------------------------------------------------------------------------------- rows

def encoder_shift(variant: Variant, ref: Any) -> np.ndarray:
    """The x that the encoder sees as zero (b_dec when the encode subtracts it, else 0)."""
    if variant.library == "saelens":
        applies = ref.cfg.apply_b_dec_to_input and ref.b_dec.shape[0] == D_IN and not hasattr(ref.cfg, "d_out")
        return ref.b_dec.numpy() if applies else np.zeros(D_IN)
    return np.zeros(D_IN) if ref.cfg.transcode else ref.b_dec.numpy()


def encoder_column(variant: Variant, ref: Any, j: int) -> np.ndarray:
    return (ref.W_enc[:, j] if variant.library == "saelens" else ref.encoder.weight[j]).numpy()


def near_tie_row(rng: np.random.Generator, variant: Variant, ref: Any, features: list[int]) -> np.ndarray | None:
    """A row whose pack feature `a` sits just above the k-th largest other pre-activation (bisection on t)."""
    x0 = rng.normal(0, 1, D_IN) * 2.0
    a = int(rng.choice([f for f in features if f not in (TIE_A, TIE_B)]))
    u = encoder_column(variant, ref, a)
    u = u / np.linalg.norm(u)
    gap = 10 ** rng.uniform(-7, -3)

    def f(t: float) -> float:
        h = rank_key(variant, pre_activations(variant, ref, (x0 + t * u)[None])[0])
        others = np.delete(h, a)
        kth = np.sort(others)[::-1][K - 1]
        return h[a] - kth - gap * max(abs(kth), 1e-3)

    lo, hi = -1.0, 1.0
    for _ in range(20):
        if f(lo) < 0 < f(hi):
            break
        lo, hi = lo * 2, hi * 2
    else:
        return None
    for _ in range(56):  # the bracket shrinks to 2^-56 of its width: far below the smallest gap placed
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (x0 + hi * u).astype(np.float32)


def make_rows(rng: np.random.Generator, variant: Variant, ref: Any, features: list[int]) -> tuple[np.ndarray, list[str]]:
    rows, kinds = [], []
    shift = encoder_shift(variant, ref)
    for i in range(TOKENS):
        kind = ["random", "random", "high_norm", "all_negative", "near_tie", "near_tie", "random", "near_tie", "random", "high_norm"][i]
        if kind == "near_tie" and not variant.topk:
            kind = "random"
        if kind == "all_negative" and variant.normalised:
            kind = "random"  # normalisation moves b_dec; the row would not be all-negative
        x = None
        if kind == "near_tie":
            x = near_tie_row(rng, variant, ref, features)
            if x is None:
                kind = "random"
        if kind == "random":
            x = rng.normal(0, 1, D_IN) * rng.uniform(0.5, 8)
        elif kind == "high_norm":
            x = rng.normal(0, 1, D_IN) * 1e3
        elif kind == "all_negative":
            x = shift.copy()
        rows.append(np.asarray(x, dtype=np.float32))
        kinds.append(kind)
    return np.stack(rows), kinds


# ---------------------------------------------------------------------------------------------- build

def pack_json(name: str, features: list[int], weights: list[float], thresholds: list[float]) -> dict:
    return {
        "schema": "mechreward.pack/v1", "name": name, "synthetic": True, "model": "synthetic", "sae": "sae",
        "description": "Library fixture: random weights, built and saved by the library itself.",
        "encode": "topk", "pooling": {"method": "mean"},
        "features": [{"id": f, "weight": w, "threshold": t} for f, w, t in zip(features, weights, thresholds)],
    }


def build(out_dir: str, seed: int = 0) -> dict:
    """Writes packs/<variant>/ for every exact variant, refused/<variant>/sae for the refused ones, and
    returns {"exact": [...cases], "refused": [...]} with inputs and the library's expected rewards."""
    torch.manual_seed(seed)
    exact, refused = [], []
    for n, variant in enumerate(variants()):
        rng = np.random.default_rng(seed * 1000 + n)
        obj = variant.make()
        randomise(obj, rng)
        base = os.path.join(out_dir, "packs" if variant.expect == "exact" else "refused", variant.name)
        sae_dir = os.path.join(base, "sae")
        save(variant, obj, sae_dir)
        if variant.expect == "refused":
            refused.append({"name": variant.name, "dir": sae_dir, "refusal": variant.refusal})
            continue
        ref = load_reference(variant, sae_dir)
        others = [int(f) for f in rng.choice([f for f in range(D_SAE) if f not in (TIE_A, TIE_B)], 8, replace=False)]
        features = [TIE_A, TIE_B, *others]
        weights = [round(float(w), 3) for w in rng.uniform(0.2, 2.0, len(features)) * rng.choice([-1, 1], len(features))]
        thresholds = [0.0] * len(features)
        thresholds[3] = 0.05
        with open(os.path.join(base, "pack.json"), "w") as f:
            json.dump(pack_json(variant.name, features, weights, thresholds), f, indent=1)
        sequences = []
        for _ in range(SEQUENCES):
            x, kinds = make_rows(rng, variant, ref, features)
            acts = library_encode(variant, ref, x.astype(np.float64))[:, features]
            w = np.asarray(weights)
            thr = np.asarray(thresholds)
            kept = acts * (acts > thr)
            rewards = kept @ w
            scales = np.abs(kept * w).sum(axis=1)
            tie_info = []
            if variant.topk:
                h = rank_key(variant, pre_activations(variant, ref, x.astype(np.float64)))
                tie_info = [kth_gap(row, K) for row in h]
            sequences.append({"x": x, "kinds": kinds, "rewards": rewards, "scales": scales, "tie": tie_info,
                              "acts": acts})
        exact.append({"name": variant.name, "variant": variant, "features": features, "weights": weights,
                      "thresholds": thresholds, "sequences": sequences, "ref": ref})
    return {"exact": exact, "refused": refused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    built = build(args.out, args.seed)
    for c in built["exact"]:
        kinds = [k for s in c["sequences"] for k in s["kinds"]]
        print(f"exact   {c['name']:32s} tokens {len(kinds)}  near-tie rows {kinds.count('near_tie')}")
    for r in built["refused"]:
        print(f"refused {r['name']:32s} expects {r['refusal']}")


if __name__ == "__main__":
    main()
