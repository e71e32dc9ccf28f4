"""Residual-stream capture after one decoder layer, for plain, PEFT-wrapped and multimodal HF models.

A resid_post SAE at layer L reads the raw output of ``layers[L]``, which is ``hidden_states[L + 1]`` of a full
forward (never ``hidden_states[L]``; and for the last layer the hook, not ``hidden_states[-1]``, which is after
the final norm). A forward hook on ``layers[L]`` takes that output and then stops the forward: the rest of the
network is wasted work for a reward.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

# Attribute paths to the decoder layer list, tried in order from the model (and from each wrapper's inner
# model): text LMs, multimodal wrappers (Qwen3.5/3.6, Gemma-3/4, Llava-style), GPT-2 / NeoX style, pure SSMs.
_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "language_model.layers",
    "model.text_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "backbone.layers",  # Mamba, Mamba-2, Falcon-Mamba
    "layers",
)


class _StopForward(Exception):
    """Raised by the capture hook once it has what it needs; never escapes capture_residual."""


def _resolve(root: nn.Module, path: str) -> nn.Module | None:
    node: object = root
    for name in path.split("."):
        node = getattr(node, name, None)
        if node is None:
            return None
    return node if isinstance(node, nn.Module) else None


def _unwrapped(model: nn.Module) -> list[nn.Module]:
    """The model and the models it wraps: PEFT (get_base_model), DDP/accelerate (module), torch.compile."""
    chain = [model]
    while True:
        current = chain[-1]
        inner = current.get_base_model() if callable(getattr(current, "get_base_model", None)) else None
        if not isinstance(inner, nn.Module) or any(inner is m for m in chain):
            wrapped = (getattr(current, name, None) for name in ("_orig_mod", "module"))
            inner = next((m for m in wrapped if isinstance(m, nn.Module)), None)
        if inner is None or any(inner is m for m in chain):
            return chain
        chain.append(inner)


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers, wherever the architecture keeps it."""
    for candidate in _unwrapped(model):
        for path in _LAYER_PATHS:
            layers = _resolve(candidate, path)
            if isinstance(layers, nn.ModuleList) and len(layers) > 0:
                return layers
    raise ValueError(
        f"capture: no decoder layer list found in {type(model).__name__} "
        f"(looked for {', '.join(_LAYER_PATHS)}, also under PEFT/compile wrappers)"
    )


def _position_ids_for_left_padding(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Positions counted over real tokens only, when some row starts with padding; else None (model default).

    Models number positions from the first column, so a left-padded row would start at the pad count instead
    of 0; this is what ``generate`` passes too. Right padding needs nothing: causal attention never lets a
    real token see the pads after it.
    """
    mask = attention_mask.long()
    left_padded = bool(((mask[:, :1] == 0) & (mask.sum(dim=1, keepdim=True) > 0)).any())
    if not left_padded:
        return None
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


# --- the padding-leak guard --------------------------------------------------------------------------------
# Padded rows must give the activations of the row run alone. Hybrid layers (Gated DeltaNet, Mamba, short
# convolutions) carry a recurrent or convolution state along the sequence, and a fused GPU kernel that ignores
# the attention mask lets pad positions leak into it. The guard re-runs the most padded row of a batch on its
# own and compares; a leak is a relative error of order 1, kernel noise is far below these bounds.

PADDING_CHECK_ENV = "MECHREWARD_PADDING_CHECK"
PADDING_CHECK_MODES = ("once", "always", "off")
# max |padded - alone| / max |alone| over the row: float32 CPU paths measure <= 2e-6 (tests/test_hybrid_capture.py);
# half-precision kernels may pick different reduction orders for different shapes.
PADDING_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 5e-2}

_checked_models: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


class PaddingLeakError(RuntimeError):
    """A padded row's activations differ from the same row run alone: padding leaks into the residual stream."""


@dataclass(frozen=True)
class PaddingCheck:
    row: int  # the row of the batch that was re-run alone (the one with the most padding)
    pads: int
    max_abs_diff: float
    scale: float  # max |activation| of the row alone
    tolerance: float  # relative: the check passes when max_abs_diff <= tolerance * max(scale, 1e-6)

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.scale, 1e-6)

    @property
    def ok(self) -> bool:
        return self.relative_diff <= self.tolerance


def _padding_check_mode(mode: str | None) -> str:
    chosen = mode if mode is not None else os.environ.get(PADDING_CHECK_ENV, "once")
    if chosen not in PADDING_CHECK_MODES:
        raise ValueError(f"capture: padding_check / {PADDING_CHECK_ENV} must be one of {', '.join(PADDING_CHECK_MODES)}, got {chosen!r}")
    return chosen


def check_padding(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    captured: Sequence[torch.Tensor] | None = None,
    tolerance: float | None = None,
) -> PaddingCheck | None:
    """Compare the most padded row of a batch with its unpadded forward, at decoder layer ``layer``.

    ``captured`` is the batch's capture if the caller already has it (else it is computed). Returns None when
    no row has both padding and a real token. It never raises on a leak: the caller decides (``PaddingCheck.ok``).
    """
    mask = attention_mask.to("cpu").bool()
    real = mask.sum(dim=1)
    pads = mask.shape[1] - real
    candidates = [r for r in range(mask.shape[0]) if real[r] > 0 and pads[r] > 0]
    if not candidates:
        return None
    row = max(candidates, key=lambda r: int(pads[r]))
    if captured is None:
        captured = capture_residual(model, input_ids, attention_mask, layer, padding_check="off")
    alone_ids = input_ids.to("cpu")[row][mask[row]].unsqueeze(0)
    alone = capture_residual(model, alone_ids, None, layer, padding_check="off")[0].float()
    padded = captured[row].float()
    limit = tolerance if tolerance is not None else PADDING_TOLERANCE.get(captured[row].dtype, 5e-2)
    return PaddingCheck(row=row, pads=int(pads[row]), max_abs_diff=float((padded - alone).abs().max()),
                        scale=float(alone.abs().max()), tolerance=limit)


def _guard_padding(model: nn.Module, input_ids, attention_mask, layer: int, captured, mode: str) -> None:
    if mode == "off" or (mode == "once" and model in _checked_models):
        return
    result = check_padding(model, input_ids, attention_mask, layer, captured)
    if result is None:
        return  # no padded row in this batch: check the next one
    _checked_models.add(model)
    if not result.ok:
        raise PaddingLeakError(
            f"capture: padding leaks into layer {layer}'s residual stream of {type(model).__name__}: row {result.row} "
            f"({result.pads} pads) differs from the same tokens run alone by {result.max_abs_diff:.3g} "
            f"(relative {result.relative_diff:.3g} > tolerance {result.tolerance:.3g}). Rewards from padded batches "
            f"would be wrong. Likely cause: a fused kernel (flash-linear-attention, causal-conv1d, mamba-ssm) that "
            f"ignores the attention mask; try another attn_implementation or kernel, or capture rows one at a time. "
            f"{PADDING_CHECK_ENV}=off disables this check."
        )


@torch.no_grad()
def capture_residual(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layer: int,
    padding_check: str | None = None,
) -> list[torch.Tensor]:
    """Each sequence's residual activations after decoder layer ``layer``: a list of [T_i, d_model] tensors.

    ``input_ids`` and ``attention_mask`` are [B, T]; rows may be left- or right-padded. Only positions where
    the mask is 1 are returned, in order, in the model's dtype, on the CPU. Dropout is switched off for the
    pass (the model's train/eval mode is restored afterwards), so the same ids give the same activations.

    ``padding_check`` (default: the ``MECHREWARD_PADDING_CHECK`` variable, else ``"once"``): ``"once"`` re-runs
    the most padded row of the first padded batch a model sees on its own and raises ``PaddingLeakError`` if
    the two differ beyond ``PADDING_TOLERANCE``; ``"always"`` does so for every padded batch; ``"off"`` never.
    """
    mode = _padding_check_mode(padding_check)
    layers = find_decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"capture: layer {layer} out of range; the model has {len(layers)} decoder layers")
    if input_ids.dim() != 2:
        raise ValueError(f"capture: input_ids must be [batch, tokens], got shape {list(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"capture: attention_mask shape {list(attention_mask.shape)} != input_ids {list(input_ids.shape)}")

    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: object, output: object) -> None:
        # Current Llama/Qwen/Gemma layers return a tensor; older and MoE variants a tuple led by it.
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        captured.append(hidden.detach())
        raise _StopForward

    device = next(model.parameters()).device
    kwargs: dict[str, torch.Tensor | bool] = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "use_cache": False,  # cached activations from generate are not bit-identical; re-forward fully
    }
    position_ids = _position_ids_for_left_padding(attention_mask)
    if position_ids is not None:
        kwargs["position_ids"] = position_ids.to(device)

    was_training = model.training
    handle = layers[layer].register_forward_hook(hook)
    try:
        model.eval()
        model(**kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RuntimeError(f"capture: decoder layer {layer} did not run during the forward pass")

    hidden = captured[0].to("cpu")
    mask = attention_mask.to("cpu").bool()
    rows = [hidden[row][mask[row]] for row in range(hidden.shape[0])]
    _guard_padding(model, input_ids, attention_mask, layer, rows, mode)
    return rows


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> right-padded [B, T] ids and mask (positions then match an unpadded forward)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mechreward_client.capture MODEL --layer N``: the padding check as a command, for the machine,
    kernels and dtype a training run will use. Exit 0 when every padded row equals its unpadded forward."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m mechreward_client.capture", description=main.__doc__)
    parser.add_argument("model", help="a local model folder (from_pretrained, local files only)")
    parser.add_argument("--layer", type=int, action="append", required=True, help="decoder layer; repeat for more")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0, to check the GPU kernels")
    parser.add_argument("--attn-implementation", default=None, help="eager, sdpa, flash_attention_2, ...")
    parser.add_argument("--tokens", type=int, default=24, help="real tokens of the short row")
    parser.add_argument("--pads", type=int, default=100, help="pads the short row gets next to the long row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": args.attn_implementation} if args.attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=getattr(torch, args.dtype), **extra)
    model = model.to(args.device).eval()
    vocab = int(model.config.get_text_config().vocab_size)
    g = torch.Generator().manual_seed(args.seed)
    long_row = torch.randint(3, vocab, (args.tokens + args.pads,), generator=g).tolist()
    short_row = torch.randint(3, vocab, (args.tokens,), generator=g).tolist()
    pad_id = 0
    right_ids, right_mask = pad_right([long_row, short_row], pad_id)
    left_ids, left_mask = right_ids.clone(), right_mask.clone()
    left_ids[1] = torch.cat([torch.full((args.pads,), pad_id), right_ids[1, : args.tokens]])
    left_mask[1] = torch.cat([torch.zeros(args.pads, dtype=torch.long), torch.ones(args.tokens, dtype=torch.long)])
    failed = False
    for layer in args.layer:
        for side, ids, mask in (("right", right_ids, right_mask), ("left", left_ids, left_mask)):
            result = check_padding(model, ids, mask, layer)
            assert result is not None
            failed |= not result.ok
            print(json.dumps({"layer": layer, "padding": side, "pads": result.pads, "max_abs_diff": result.max_abs_diff,
                              "relative_diff": result.relative_diff, "tolerance": result.tolerance,
                              "ok": result.ok, "dtype": args.dtype, "device": args.device}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
