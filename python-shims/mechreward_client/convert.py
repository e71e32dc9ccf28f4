"""Convert an original-mechreward SAE checkpoint into the SAELens layout a pack uses.

    python -m mechreward_client.convert --pt sae_final.pt --json sae_final.json --out packs/my-pack/sae

Input: ``sae_final.pt`` (a torch pickle holding W_enc [d_model, d_sae], W_dec [d_sae, d_model], b_enc [d_sae],
b_dec [d_model]) and ``sae_final.json`` (d_model, d_sae, k, layer). Output: ``cfg.json`` +
``sae_weights.safetensors`` (TopK, SAELens 6.x field names), which the sidecar loads without ever touching a
pickle. The pickle is opened here with ``torch.load(weights_only=True)``: tensors and plain containers only,
no arbitrary code. Every shape is checked against the JSON before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

TENSOR_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec")
# Where trainers commonly nest a state dict inside a checkpoint.
NESTING_KEYS = ("state_dict", "model_state_dict", "model", "sae")


class ConversionError(ValueError):
    """The checkpoint or its JSON does not describe a TopK SAE we can convert."""


def _find_tensors(checkpoint: Any) -> dict[str, Any]:
    import torch

    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"checkpoint: expected a dict of tensors, got {type(checkpoint).__name__}")
    for key in NESTING_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping) and not all(n in checkpoint for n in TENSOR_NAMES):
            return _find_tensors(checkpoint[key])
    found: dict[str, Any] = {}
    for name in TENSOR_NAMES:
        # Accept prefixed keys (e.g. "sae.W_enc") when exactly one key ends with the name.
        matches = [k for k in checkpoint if k == name or (isinstance(k, str) and k.endswith("." + name))]
        if len(matches) != 1:
            what = "missing" if not matches else f"ambiguous ({matches})"
            raise ConversionError(f"checkpoint: tensor {name} {what}; keys: {sorted(map(str, checkpoint))}")
        value = checkpoint[matches[0]]
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"checkpoint: {matches[0]} is a {type(value).__name__}, not a tensor")
        found[name] = value
    return found


def _read_config(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    config: dict[str, int] = {}
    for field in ("d_model", "d_sae", "k", "layer"):
        value = raw.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if field == "layer" else 1):
            raise ConversionError(f"{os.path.basename(path)}: field {field} must be an integer, got {value!r}")
        config[field] = value
    if config["k"] > config["d_sae"]:
        raise ConversionError(f"{os.path.basename(path)}: k={config['k']} is larger than d_sae={config['d_sae']}")
    return config


def _check_shapes(tensors: dict[str, Any], d_model: int, d_sae: int) -> dict[str, Any]:
    expected = {"W_enc": (d_model, d_sae), "W_dec": (d_sae, d_model), "b_enc": (d_sae,), "b_dec": (d_model,)}
    out = dict(tensors)
    w_enc = tensors["W_enc"]
    # An encoder kept as nn.Linear weight is [d_sae, d_model]; transposing it is unambiguous when d_model != d_sae.
    if tuple(w_enc.shape) == (d_sae, d_model) and d_model != d_sae:
        out["W_enc"] = w_enc.t()
    for name, shape in expected.items():
        got = tuple(out[name].shape)
        if got != shape:
            raise ConversionError(f"checkpoint: {name} has shape {list(got)}, expected {list(shape)} from the JSON")
    for name, tensor in out.items():
        if not tensor.is_floating_point():
            raise ConversionError(f"checkpoint: {name} has dtype {tensor.dtype}, expected a floating-point tensor")
        if not bool(tensor.isfinite().all()):
            raise ConversionError(f"checkpoint: {name} holds NaN or infinite values")
    return out


def convert(pt_path: str, json_path: str, out_dir: str, *, dtype: str = "keep", model_name: str | None = None) -> dict[str, Any]:
    """Write out_dir/cfg.json and out_dir/sae_weights.safetensors; return the cfg written."""
    import torch
    from safetensors.torch import save_file

    config = _read_config(json_path)
    try:
        checkpoint = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (and others) for anything beyond plain tensors
        raise ConversionError(
            f"{os.path.basename(pt_path)}: cannot be read as plain tensors (torch.load weights_only=True): {exc}"
        ) from exc
    tensors = _check_shapes(_find_tensors(checkpoint), config["d_model"], config["d_sae"])
    target_dtype = {"keep": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    if target_dtype is not None:
        tensors = {name: t.to(target_dtype) for name, t in tensors.items()}
    stored = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}

    cfg = {
        "d_in": config["d_model"],
        "d_sae": config["d_sae"],
        "architecture": "topk",
        "k": config["k"],
        # The original project's TopK SAE subtracts b_dec before encoding and stores final, unnormalised weights.
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "dtype": str(stored["W_enc"].dtype).removeprefix("torch."),
        "metadata": {
            "hook_name": f"blocks.{config['layer']}.hook_resid_post",
            "converted_from": os.path.basename(pt_path),
            **({"model_name": model_name} if model_name else {}),
        },
    }
    os.makedirs(out_dir, exist_ok=True)
    save_file(stored, os.path.join(out_dir, "sae_weights.safetensors"))
    with open(os.path.join(out_dir, "cfg.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mechreward_client.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pt", required=True, help="sae_final.pt (torch checkpoint with W_enc, W_dec, b_enc, b_dec)")
    parser.add_argument("--json", required=True, help="sae_final.json (d_model, d_sae, k, layer)")
    parser.add_argument("--out", required=True, help="output folder, usually <pack>/sae")
    parser.add_argument("--dtype", choices=("keep", "float32", "float16", "bfloat16"), default="keep",
                        help="dtype of the stored tensors (default: as in the checkpoint; the server widens exactly)")
    parser.add_argument("--model-name", help="recorded in cfg.json metadata.model_name")
    args = parser.parse_args(argv)
    try:
        cfg = convert(args.pt, args.json, args.out, dtype=args.dtype, model_name=args.model_name)
    except (ConversionError, OSError, json.JSONDecodeError) as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: d_in {cfg['d_in']}, d_sae {cfg['d_sae']}, k {cfg['k']}, {cfg['metadata']['hook_name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
