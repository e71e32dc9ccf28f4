"""Independent float64 reference for mechreward's SAE feature rewards.

numpy only (plus the `safetensors` parser for the file container); nothing here
is shared with the TypeScript engine. Every weight and input is decoded exactly
from its stored bytes (F32/F16/BF16) and all arithmetic is float64.

Math (docs/domain.md sections 3-5, docs/packs.md "The encode, step by step"), applied row by row to x
(length d_model):
  1. normalisation (SAELens order): none / expected_average_only_in -> identity;
     constant_norm_rescale -> x * sqrt(d_model) / ||x||;
     layer_norm -> (x - mean(x)) / (std(x, ddof=1) + 1e-5)
  2. subtract b_dec if apply_b_dec_to_input (sparsify: unless transcode; SAELens
     transcoders: never, their b_dec lives in the output space)
  3. h = x' @ W_enc + b_enc;  if rescale_acts_by_decoder_norm (topk, abstopk): h *= ||W_dec[i]||
     gated: gate g = x' @ W_enc + b_gate, magnitude h = x' @ (W_enc * exp(r_mag)) + b_mag
  4. encode "topk" (exact, per architecture):
       topk     : keep the k largest h (ties -> lower index), f = max(h, 0) there
       abstopk  : keep the k largest |h| (ties -> lower index), f = h there (signed, no ReLU)
       groupmax : relu(h) as k contiguous groups of d_sae/k; each group's largest (ties -> lower
                  index) is kept
       relu     : f = max(h, 0)                       (SAELens "standard", transcoders)
       jumprelu : f = max(h, 0) * (h > threshold)     (threshold = exp(log_threshold) when stored so)
       gated    : f = (g > 0) * max(h, 0)
     encode "selected_relu": f = max(h, 0) for the pack's features, no TopK/jump (not defined for gated).
  5. per-feature threshold t_f: f_f counts only when f_f > t_f (so with t_f = 0 a negative AbsTopK
     value is dropped; a negative t_f keeps it)
  6. r_t = sum_f w_f f_f(x_t);  token_scale_t = sum_f |w_f f_f(x_t)|
  7. pooling over response tokens t >= score_from: mean | sum | max | last_k
  8. canaries: value = max over response tokens of the canary feature's
     activation (pack encode mode, no per-feature threshold); fires if > threshold.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import safetensors

LN_EPS = 1e-5
OWN_SCHEMA = "mechreward.pack/v1"
ARCHITECTURES = {"topk": "topk", "standard": "relu", "relu": "relu", "jumprelu": "jumprelu", "gated": "gated",
                 "abstopk": "abstopk"}
# SAELens transcoders: (architecture, has W_skip). Their encode never subtracts b_dec (it has d_out entries).
TRANSCODERS = {"transcoder": ("relu", False), "skip_transcoder": ("relu", True),
               "jumprelu_transcoder": ("jumprelu", False), "jumprelu_skip_transcoder": ("jumprelu", True)}
SPARSIFY_ACTIVATIONS = ("topk", "groupmax")
RANKING = ("topk", "abstopk", "groupmax")  # encodes that look at all d_sae pre-activations of a token
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
POOLINGS = ("mean", "sum", "max", "last_k")
ENCODES = ("topk", "selected_relu", "topk_int8")  # topk_int8: see int8_reference.py
INPUT_DTYPES = ("f32", "f16", "bf16")


# ---------------------------------------------------------------- decoding
def decode_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float64 (exact)."""
    bits32 = bits.astype(np.uint32) << np.uint32(16)
    return bits32.view(np.float32).astype(np.float64)


def decode_tensor(raw: bytes, dtype: str, shape) -> np.ndarray:
    """Raw little-endian safetensors bytes -> float64 array (exact)."""
    if dtype == "F64":
        arr = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    elif dtype == "F32":
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif dtype == "F16":
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    elif dtype == "BF16":
        arr = decode_bf16_bits(np.frombuffer(raw, dtype="<u2"))
    else:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    return arr.reshape(shape)


def read_safetensors(path: str) -> Dict[str, dict]:
    """{name: {"dtype": "F32"|..., "shape": [...], "value": float64 array}}."""
    with open(path, "rb") as fh:
        blob = fh.read()
    out = {}
    for name, info in safetensors.deserialize(blob):
        shape = list(info["shape"])
        out[name] = {
            "dtype": info["dtype"],
            "shape": shape,
            "value": decode_tensor(bytes(info["data"]), info["dtype"], shape),
        }
    return out


def decode_input(raw: bytes, dtype: str, d_model: int) -> np.ndarray:
    """Stored input bytes (little-endian row-major [T, d_model]) -> float64."""
    if dtype == "f32":
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif dtype == "f16":
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    elif dtype == "bf16":
        arr = decode_bf16_bits(np.frombuffer(raw, dtype="<u2"))
    else:
        raise ValueError(f"unsupported input dtype {dtype}")
    if arr.size % d_model:
        raise ValueError(f"input of {arr.size} values is not a multiple of d_model={d_model}")
    return arr.reshape(-1, d_model)


# ---------------------------------------------------------------- SAE
@dataclass
class Sae:
    layout: str  # "saelens" | "sparsify"
    d_model: int
    d_sae: int
    architecture: str  # "topk" | "relu" | "jumprelu" | "gated" | "abstopk" | "groupmax"
    k: Optional[int]
    apply_b_dec: bool
    normalize: str
    rescale: bool
    W_enc: np.ndarray  # [d_model, d_sae]
    b_enc: np.ndarray  # [d_sae] (gated: b_mag)
    W_dec: Optional[np.ndarray]  # [d_sae, d_out]; d_out = d_model except for transcoders
    b_dec: np.ndarray  # [d_out]
    threshold: Optional[np.ndarray]  # [d_sae] (jumprelu; exp(log_threshold) when stored as log_threshold)
    b_gate: Optional[np.ndarray] = None  # [d_sae] (gated)
    r_mag: Optional[np.ndarray] = None  # [d_sae] (gated: the magnitude path's columns are W_enc * exp(r_mag))
    transcoder: bool = False  # predicts another activation: b_dec is never subtracted from the input
    tensor_dtypes: Dict[str, str] = field(default_factory=dict)
    cfg: dict = field(default_factory=dict)

    @property
    def decoder_norms(self) -> np.ndarray:
        """||W_dec[i]|| (cached; the weights are never mutated after loading)."""
        if "_dec_norms" not in self.__dict__:
            self.__dict__["_dec_norms"] = np.sqrt(np.sum(self.W_dec * self.W_dec, axis=1))
        return self.__dict__["_dec_norms"]

    @property
    def act_scale(self) -> np.ndarray:
        """Per-feature multiplier applied to h (decoder norms or ones)."""
        return self.decoder_norms if self.rescale else np.ones(self.d_sae)


def _expect_shape(name, t, shape):
    if list(t["shape"]) != list(shape):
        raise ValueError(f"tensor {name}: shape {t['shape']} != expected {list(shape)}")


def _saelens_is_pre6(cfg: dict) -> bool:
    """SAELens reads a cfg without sae_lens_version (top level or metadata), or below 6.0, in the old form."""
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not isinstance(version, str) or not version:
        return True
    major = version.lstrip("v").split(".")[0]
    return not major.isdigit() or int(major) < 6


def _saelens_architecture(cfg: dict):
    """(architecture name as SAELens would build it, k) with the pre-6.0 activation_fn rule applied."""
    name, k = cfg.get("architecture") or "standard", cfg.get("k")
    if _saelens_is_pre6(cfg):
        activation = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
        kwargs = cfg.get("activation_fn_kwargs") or {}
        if activation == "topk" and kwargs.get("k") is not None:
            name, k = "topk", kwargs["k"]
        elif activation != "relu":
            raise ValueError(f"unsupported activation_fn {activation}")
    return name, k


def _load_saelens(cfg: dict, path: str) -> Sae:
    t = read_safetensors(path)
    d_model, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    name, k = _saelens_architecture(cfg)
    transcoder = name in TRANSCODERS
    if transcoder:
        arch = TRANSCODERS[name][0]
    elif name in ARCHITECTURES:
        arch = ARCHITECTURES[name]
    else:
        raise ValueError(f"unsupported architecture {name}")
    d_out = int(cfg["d_out"]) if transcoder else d_model
    norm = cfg.get("normalize_activations", "none")
    norm = "expected_average_only_in" if norm is True else "none" if norm in (None, False) else norm
    if norm not in NORMALIZATIONS:
        raise ValueError(f"unsupported normalize_activations {norm}")
    gated = arch == "gated"
    _expect_shape("W_enc", t["W_enc"], (d_model, d_sae))
    _expect_shape("b_dec", t["b_dec"], (d_out,))
    for n in (("b_gate", "b_mag", "r_mag") if gated else ("b_enc",)):
        _expect_shape(n, t[n], (d_sae,))
    if "W_dec" in t:
        _expect_shape("W_dec", t["W_dec"], (d_sae, d_out))
    threshold = None
    if arch == "jumprelu":
        if "threshold" in t:
            _expect_shape("threshold", t["threshold"], (d_sae,))
            threshold = t["threshold"]["value"]
        else:  # older checkpoints; SAELens' JumpReLU process_state_dict_for_loading exponentiates it
            _expect_shape("log_threshold", t["log_threshold"], (d_sae,))
            threshold = np.exp(t["log_threshold"]["value"])
    # TopKSAEConfig (AbsTopK's base) is the only SAELens config with rescale_acts_by_decoder_norm.
    rescale = arch in ("topk", "abstopk") and bool(cfg.get("rescale_acts_by_decoder_norm", False))
    return Sae(
        layout="saelens", d_model=d_model, d_sae=d_sae, architecture=arch,
        k=int(k) if arch in ("topk", "abstopk") else None,
        apply_b_dec=not transcoder and bool(cfg.get("apply_b_dec_to_input", True)), normalize=norm,
        rescale=rescale, W_enc=t["W_enc"]["value"], b_enc=t["b_mag" if gated else "b_enc"]["value"],
        W_dec=t["W_dec"]["value"] if "W_dec" in t else None, b_dec=t["b_dec"]["value"], threshold=threshold,
        b_gate=t["b_gate"]["value"] if gated else None, r_mag=t["r_mag"]["value"] if gated else None,
        transcoder=transcoder, tensor_dtypes={n: v["dtype"] for n, v in t.items()}, cfg=cfg,
    )


def _load_sparsify(cfg: dict, path: str) -> Sae:
    t = read_safetensors(path)
    d_model = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents", 0)) or d_model * int(cfg.get("expansion_factor", 32))
    k = int(cfg.get("k", 32))
    activation = cfg.get("activation", "topk")
    if activation not in SPARSIFY_ACTIVATIONS:
        raise ValueError(f"unsupported sparsify activation {activation}")
    if activation == "groupmax" and d_sae % k:
        raise ValueError(f"groupmax needs num_latents ({d_sae}) divisible by k ({k})")
    transcode = bool(cfg.get("transcode", False))
    for name, shape in (("encoder.weight", (d_sae, d_model)), ("encoder.bias", (d_sae,)),
                        ("W_dec", (d_sae, d_model)), ("b_dec", (d_model,))):
        if name in t or name != "W_dec":
            _expect_shape(name, t[name], shape)
    return Sae(
        layout="sparsify", d_model=d_model, d_sae=d_sae, architecture=activation,
        k=k, apply_b_dec=not transcode, normalize="none", rescale=False,
        W_enc=t["encoder.weight"]["value"].T.copy(), b_enc=t["encoder.bias"]["value"],
        W_dec=t["W_dec"]["value"] if "W_dec" in t else None, b_dec=t["b_dec"]["value"], threshold=None,
        transcoder=transcode, tensor_dtypes={n: v["dtype"] for n, v in t.items()}, cfg=cfg,
    )


def load_sae(sae_dir: str) -> Sae:
    with open(os.path.join(sae_dir, "cfg.json")) as fh:
        cfg = json.load(fh)
    saelens_path = os.path.join(sae_dir, "sae_weights.safetensors")
    sparsify_path = os.path.join(sae_dir, "sae.safetensors")
    if os.path.exists(saelens_path):
        return _load_saelens(cfg, saelens_path)
    if os.path.exists(sparsify_path):
        return _load_sparsify(cfg, sparsify_path)
    raise FileNotFoundError(f"no sae_weights.safetensors or sae.safetensors in {sae_dir}")


# ---------------------------------------------------------------- packs
@dataclass
class Feature:
    id: int
    weight: float
    threshold: float = 0.0
    name: str = ""


@dataclass
class Canary:
    name: str
    feature: int
    threshold: float


@dataclass
class Pack:
    name: str
    schema: str  # "own" | "A" | "B"
    encode: str
    pooling: str
    pooling_k: Optional[int]
    features: List[Feature]
    canaries: List[Canary]
    sae_dir: str
    raw: dict = field(default_factory=dict)

    @property
    def feature_ids(self) -> np.ndarray:
        return np.array([f.id for f in self.features], dtype=np.int64)

    @property
    def weights(self) -> np.ndarray:
        return np.array([f.weight for f in self.features], dtype=np.float64)

    @property
    def thresholds(self) -> np.ndarray:
        return np.array([f.threshold for f in self.features], dtype=np.float64)


def parse_pack(data: dict, pack_dir: str) -> Pack:
    if data.get("schema") == OWN_SCHEMA:
        pooling = data.get("pooling") or {"method": "mean"}
        method = pooling.get("method", "mean")
        pk = int(pooling["k"]) if method == "last_k" else None
        feats = [Feature(int(f["id"]), float(f["weight"]), float(f.get("threshold", 0.0) or 0.0),
                         f.get("name", "")) for f in data["features"]]
        cans = [Canary(c["name"], int(c["feature"]), float(c["threshold"]))
                for c in data.get("canaries", [])]
        encode = data.get("encode", "topk")
        schema = "own"
        sae_rel = data.get("sae", "sae")
    elif "helpful_features" in data or "harmful_features" in data:
        feats = [Feature(int(f["feature_id"]), float(f.get("weight", 1.0)), 0.0, "")
                 for f in data.get("helpful_features", [])]
        feats += [Feature(int(f["feature_id"]), float(f.get("weight", -1.0)), 0.0, "")
                  for f in data.get("harmful_features", [])]
        cans, encode, method, pk, schema, sae_rel = [], "topk", "mean", None, "B", "sae"
    elif "features" in data:
        feats = [Feature(int(f["feature_id"]), float(f["weight"]),
                         float(f.get("activation_threshold", 0.0) or 0.0), f.get("name", ""))
                 for f in data["features"]]
        cans, encode, method, pk, schema, sae_rel = [], "topk", "mean", None, "A", "sae"
    else:
        raise ValueError("unrecognised pack.json schema")
    if encode not in ENCODES:
        raise ValueError(f"unsupported encode {encode}")
    if method not in POOLINGS:
        raise ValueError(f"unsupported pooling {method}")
    if method == "last_k" and (pk is None or pk < 1):
        raise ValueError("last_k pooling needs k >= 1")
    return Pack(name=data["name"], schema=schema, encode=encode, pooling=method, pooling_k=pk,
                features=feats, canaries=cans,
                sae_dir=os.path.normpath(os.path.join(pack_dir, sae_rel)), raw=data)


def load_pack(pack_dir: str) -> Pack:
    with open(os.path.join(pack_dir, "pack.json")) as fh:
        return parse_pack(json.load(fh), pack_dir)


# ---------------------------------------------------------------- encode math
def normalize(sae: Sae, X: np.ndarray) -> np.ndarray:
    """Step 1 only (no b_dec), float64, [T, d_model]."""
    X = np.asarray(X, dtype=np.float64)
    if sae.normalize in ("none", "expected_average_only_in"):
        return X.copy()
    if sae.normalize == "constant_norm_rescale":
        norms = np.sqrt(np.sum(X * X, axis=1, keepdims=True))
        return X * (math.sqrt(sae.d_model) / norms)
    if sae.normalize == "layer_norm":
        mu = X.mean(axis=1, keepdims=True)
        xc = X - mu
        std = X.std(axis=1, ddof=1, keepdims=True)
        return xc / (std + LN_EPS)
    raise ValueError(sae.normalize)


def b_dec_applied(sae: Sae) -> np.ndarray:
    return sae.b_dec if sae.apply_b_dec else np.zeros(sae.d_model)  # transcoders: b_dec has d_out entries


def sae_input(sae: Sae, X: np.ndarray) -> np.ndarray:
    """Steps 1-2: the vector multiplied by W_enc."""
    return normalize(sae, X) - b_dec_applied(sae)


def pre_activations(sae: Sae, X: np.ndarray) -> np.ndarray:
    """Step 3: h [T, d_sae] (after the optional decoder-norm rescale; gated: the magnitude path)."""
    if sae.architecture == "gated":
        return sae_input(sae, X) @ (sae.W_enc * np.exp(sae.r_mag)) + sae.b_enc
    h = sae_input(sae, X) @ sae.W_enc + sae.b_enc
    if sae.rescale:
        h = h * sae.decoder_norms
    return h


def gate_pre_activations(sae: Sae, X: np.ndarray) -> Optional[np.ndarray]:
    """Step 3, gated SAEs only: g = x' @ W_enc + b_gate [T, d_sae] (None for the other architectures)."""
    if sae.architecture != "gated":
        return None
    return sae_input(sae, X) @ sae.W_enc + sae.b_gate


def rank_keys(sae: Sae, H: np.ndarray) -> np.ndarray:
    """What a TopK-style encode sorts: h, or |h| for AbsTopK."""
    return np.abs(H) if sae.architecture == "abstopk" else H


def topk_indices(h_row: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-h_row, kind="stable")[:k]


def group_size(sae: Sae) -> int:
    return sae.d_sae // sae.k


def encode_exact(sae: Sae, H: np.ndarray, G: Optional[np.ndarray] = None) -> np.ndarray:
    """Step 4, exact architecture encode: F [T, d_sae]. G: the gate pre-activations (gated SAEs only)."""
    relu = np.maximum(H, 0.0)
    if sae.architecture == "relu":
        return relu
    if sae.architecture == "jumprelu":
        return relu * (H > sae.threshold)
    if sae.architecture == "gated":
        if G is None:
            raise ValueError("a gated encode needs the gate pre-activations")
        return relu * (G > 0)
    F = np.zeros_like(H)
    if sae.architecture in ("topk", "abstopk"):
        kept = H if sae.architecture == "abstopk" else relu
        for t in range(H.shape[0]):
            idx = topk_indices(rank_keys(sae, H[t]), sae.k)
            F[t, idx] = kept[t, idx]
        return F
    if sae.architecture == "groupmax":
        size = group_size(sae)
        groups = relu.reshape(H.shape[0], sae.k, size)
        idx = np.argmax(groups, axis=2) + np.arange(sae.k) * size  # argmax: the first (lowest) index of the max
        np.put_along_axis(F, idx, np.take_along_axis(relu, idx, axis=1), axis=1)
        return F
    raise ValueError(sae.architecture)


def mode_activations(sae: Sae, H: np.ndarray, encode: str, ids: np.ndarray,
                     G: Optional[np.ndarray] = None) -> np.ndarray:
    """Activations of features `ids` under the pack's encode mode: [T, len(ids)]."""
    ids = np.asarray(ids, dtype=np.int64)
    if encode == "selected_relu":
        if sae.architecture == "gated":
            raise ValueError("selected_relu is not defined for a gated SAE")
        return np.maximum(H[:, ids], 0.0)
    if encode == "topk":
        return encode_exact(sae, H, G)[:, ids]
    raise ValueError(encode)


def activations(sae: Sae, X: np.ndarray, encode: str, ids: np.ndarray) -> np.ndarray:
    """Steps 1-4 from the rows X: activations of features `ids` under `encode`, [T, len(ids)]."""
    return mode_activations(sae, pre_activations(sae, X), encode, ids, gate_pre_activations(sae, X))


def pack_activations(sae: Sae, pack: Pack, X: np.ndarray) -> np.ndarray:
    """Steps 1-5: [T, n_features] after the per-feature activation thresholds."""
    A = activations(sae, X, pack.encode, pack.feature_ids)
    return np.where(A > pack.thresholds, A, 0.0)


def pool(values: np.ndarray, method: str, k: Optional[int]) -> float:
    """Pool a 1-D array of response-token values."""
    if values.size == 0:
        return 0.0
    if method == "mean":
        return float(values.mean())
    if method == "sum":
        return float(values.sum())
    if method == "max":
        return float(values.max())
    if method == "last_k":
        return float(values[-min(k, values.size):].mean())
    raise ValueError(method)


def score_sequence(sae: Sae, pack: Pack, X: np.ndarray, score_from: int) -> dict:
    """Everything cases.json records for one sequence."""
    X = np.asarray(X, dtype=np.float64)
    T = X.shape[0]
    if not 0 <= score_from <= T:
        raise ValueError("score_from out of range")
    A = pack_activations(sae, pack, X)
    contrib = A * pack.weights
    r = contrib.sum(axis=1)
    s = np.abs(contrib).sum(axis=1)
    r[:score_from] = 0.0
    s[:score_from] = 0.0
    resp_r, resp_s = r[score_from:], s[score_from:]
    reward = pool(resp_r, pack.pooling, pack.pooling_k)
    reward_scale = pool(resp_s, pack.pooling, pack.pooling_k)
    canary_values, flags = {}, []
    if pack.canaries:
        ids = np.array([c.feature for c in pack.canaries], dtype=np.int64)
        CA = activations(sae, X, pack.encode, ids)[score_from:]
        for j, c in enumerate(pack.canaries):
            v = float(CA[:, j].max()) if CA.shape[0] else 0.0
            canary_values[c.name] = v
            if v > c.threshold:
                flags.append({"name": c.name, "value": v})
    return {
        "token_rewards": [float(v) for v in r],
        "token_scales": [float(v) for v in s],
        "reward": reward,
        "reward_scale": reward_scale,
        "canary_values": canary_values,
        "flags": flags,
    }


def within_tolerance(engine: float, ref: float, scale: float, rtol: float = 1e-4,
                     floor: float = 1e-6) -> bool:
    """The parity rule: |engine - ref| <= rtol * max(scale, floor)."""
    return abs(engine - ref) <= rtol * max(scale, floor)


# ---------------------------------------------------------------- linear packs and the dual verifier
# Direction and probe packs (pack.json "kind": "direction" | "probe"):
#   r_t = w . x_t + b              (direction; probe with output "logit")
#   r_t = sigmoid(w . x_t + b)     (probe with output "probability")
# token_scale_t = sum_i |w_i x_i| + |b| (logit), p(1 - p) * that + 1 (probability: the sigmoid's slope, plus
# an absolute floor of 1 so a saturated probability compares absolutely).
# Dual verifier ("verifier": {"probe", "mode", "threshold", "factor"}), applied before pooling:
#   a response token disagrees when r_t != 0 and sign(r_t) != sign(v . x_t + c) (the probe's logit);
#   disagreement rate = disagreeing / tokens with r_t != 0 (0 when none);
#   token_gate: disagreeing tokens get r_t = 0;
#   batch_downweight: if disagreeing / non-zero tokens over the whole request > threshold, every r_t of the
#   request is multiplied by factor.
@dataclass
class Linear:
    weight: np.ndarray  # [d_model]
    bias: float
    output: str  # "logit" | "probability"
    dtype: str


def load_linear(path: str, output: str = "logit") -> Linear:
    t = read_safetensors(path)
    w, b = t["weight"], t["bias"]
    if len(w["shape"]) != 1 or list(b["shape"]) != [1]:
        raise ValueError(f"{path}: weight must be [d_model] and bias [1]")
    return Linear(weight=w["value"], bias=float(b["value"][0]), output=output, dtype=w["dtype"])


@dataclass
class Verifier:
    probe: Linear
    mode: str
    threshold: float
    factor: float


def load_verifier(pack_dir: str, spec: Optional[dict]) -> Optional[Verifier]:
    if not spec:
        return None
    target = os.path.normpath(os.path.join(pack_dir, spec["probe"]))
    if os.path.isdir(target):
        with open(os.path.join(target, "pack.json")) as fh:
            inner = json.load(fh)
        target = os.path.join(target, inner["probe"]["file"])
    return Verifier(probe=load_linear(target, "logit"), mode=spec.get("mode", "token_gate"),
                    threshold=float(spec.get("threshold", 0.3)), factor=float(spec.get("factor", 0.5)))


def linear_logits(lin: Linear, X: np.ndarray) -> np.ndarray:
    return np.asarray(X, np.float64) @ lin.weight + lin.bias


def linear_scores(lin: Linear, X: np.ndarray):
    """(r_t, token_scale_t) for every row."""
    X = np.asarray(X, np.float64)
    z = linear_logits(lin, X)
    s = np.abs(X * lin.weight).sum(axis=1) + abs(lin.bias)
    if lin.output == "probability":
        p = 1.0 / (1.0 + np.exp(-z))
        return p, p * (1 - p) * s + 1.0
    return z, s


def verifier_check(r: np.ndarray, v: np.ndarray, gate: bool):
    """(considered, disagreeing, gated r) over one response's token rewards r and verifier logits v."""
    r = r.copy()
    nz = r != 0
    bad = nz & (np.sign(r) != np.sign(v))
    if gate:
        r[bad] = 0.0
    return int(nz.sum()), int(bad.sum()), r


def score_request(token_rewards, token_scales, logits, score_froms, verifier: Optional[Verifier],
                  pooling: str, pooling_k: Optional[int]):
    """Applies the verifier (if any) to a request's sequences, then pools. Lists of per-sequence arrays
    (full length, prompt tokens 0). Returns (per-sequence dicts, factor)."""
    rs = [np.asarray(r, np.float64).copy() for r in token_rewards]
    ss = [np.asarray(s, np.float64).copy() for s in token_scales]
    rates = [None] * len(rs)
    counts = [None] * len(rs)
    factor = 1.0
    if verifier is not None:
        for i, (r, v, sf) in enumerate(zip(rs, logits, score_froms)):
            c, d, gated = verifier_check(r[sf:], np.asarray(v, np.float64)[sf:], verifier.mode == "token_gate")
            r[sf:] = gated
            counts[i] = [c, d]
            rates[i] = d / c if c else 0.0
        if verifier.mode == "batch_downweight":
            c = sum(x[0] for x in counts)
            d = sum(x[1] for x in counts)
            if (d / c if c else 0.0) > verifier.threshold:
                factor = verifier.factor
                rs = [r * factor for r in rs]
                ss = [s * factor for s in ss]
    out = []
    for r, s, sf, rate, cd in zip(rs, ss, score_froms, rates, counts):
        out.append({
            "token_rewards": [float(x) for x in r],
            "token_scales": [float(x) for x in s],
            "reward": pool(r[sf:], pooling, pooling_k),
            "reward_scale": pool(s[sf:], pooling, pooling_k),
            "verifier_disagreement": rate,
            "verifier_tokens": cd,  # [rewarded tokens checked, disagreeing], None without a verifier
        })
    return out, factor
