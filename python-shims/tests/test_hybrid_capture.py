"""capture_residual on every hybrid family of the pinned transformers (tests/hybrid_models.py).

For each family's tiny random model (float32, CPU paths; the fused GPU kernels cannot run here):
- every layer's capture equals hidden_states[L + 1] of the same padded batch (bit for bit), right- and
  left-padded, and each row run alone (relative 1e-5 of the row's scale); with sdpa and with eager attention;
- the forward stops after the captured layer (no later layer, final norm or lm_head runs);
- layers that return tuples (Falcon-H1, Bamba) and a layer made to return (hidden, router_logits) are read right;
- a bf16 model stays within a stated tolerance of the float32 one, and its padded rows equal its rows alone;
- the padding guard passes on every family and catches a real leak.
"""

from __future__ import annotations

import copy

import pytest
import torch

from mechreward_client import capture_residual, find_decoder_layers
from mechreward_client.capture import PaddingLeakError, check_padding, pad_right

from hybrid_models import FAMILIES, REFUSED, build

# Row 0 is long; rows 1-3 get 16-21 pads at a width of 24 (more pads than tokens, and a 3-token row).
SEQUENCES = [
    [5, 9, 13, 4, 22, 7, 30, 31, 32, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54],
    [8, 3, 60],
    [11, 12, 13, 14, 15, 16, 17, 18],
    [20, 21, 22, 23, 24],
]
ALONE_RTOL = 1e-5  # |capture - row alone| <= ALONE_RTOL * max(1, max |row alone|); measured worst 1.3e-6
# bf16 against the float32 model with the same weights, per row and layer, relative to the row's float32 scale:
# max-abs error <= 0.1 (measured worst 0.055, Gemma-4 whose scaled embeddings reach ~30) and
# RMS error <= 0.02 of the row's RMS.
BF16_MAX_RTOL = 0.1
BF16_RMS_RTOL = 0.02
# bf16 padded rows against the same rows alone in bf16: a few bf16 ulps (2^-8 relative) of the row's scale.
BF16_ALONE_RTOL = 0.02

NAMES = sorted(FAMILIES)
torch.set_num_threads(1)  # CI has 2 cores, shared with the sidecar; tiny models gain nothing from more
# Families whose CPU path lets left padding leak into real tokens: RecurrentGemma's RG-LRU and convolution run
# over the pads before the row starts (measured: 0.065 on values up to 23 at layer 0). Right padding is exact, and
# the shims pad right (capture.pad_right). The test asserts the leak is there and that the guard catches it.
LEFT_PADDING_LEAKS = {"recurrent_gemma"}


def left_pad(sequences, pad_id=0):
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(sequences):
        ids[r, width - len(s):] = torch.tensor(s)
        mask[r, width - len(s):] = 1
    return ids, mask


@pytest.fixture(scope="module")
def models():
    """One float32 model per family, built on first use and shared by the tests of this module."""
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            cache[name] = build(name)
        return cache[name]

    return get


@torch.no_grad()
def hidden_alone(model, sequence):
    return model(input_ids=torch.tensor([sequence]), output_hidden_states=True, use_cache=False).hidden_states


def assert_close_to_alone(captured, alone, what):
    scale = max(1.0, float(alone.abs().max()))
    diff = float((captured.float() - alone.float()).abs().max())
    assert diff <= ALONE_RTOL * scale, f"{what}: |capture - alone| = {diff:.3g} > {ALONE_RTOL} x {scale:.3g}"
    return diff / scale


@pytest.mark.parametrize("name", NAMES)
def test_every_layer_equals_hidden_states_and_rows_alone(name, models):
    model = models(name)
    layers = find_decoder_layers(model)
    offset = FAMILIES[name].hidden_states_offset
    alone = [hidden_alone(model, s) for s in SEQUENCES]
    worst = 0.0
    paddings = [("right", pad_right(SEQUENCES, 0))]
    if name not in LEFT_PADDING_LEAKS:
        paddings.append(("left", left_pad(SEQUENCES)))
    for padding, (ids, mask) in paddings:
        kwargs = {}
        if padding == "left":  # what capture passes too: positions counted over real tokens
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            batch = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False, **kwargs).hidden_states
        assert len(batch) == len(layers) + 1
        for layer in range(len(layers)):
            captured = capture_residual(model, ids, mask, layer, padding_check="off")
            for row, seq in enumerate(SEQUENCES):
                # [T, hidden_size]; with hyper-connections every stream: Qwen4-Exp [T, 4 x 64], GLM-5-Next [T, 4, 64]
                assert captured[row].shape == (len(seq), *batch[1].shape[2:])
                index = layer + offset
                if index < len(layers):  # the last entry of hidden_states is after the final norm
                    assert torch.equal(captured[row], batch[index][row][mask[row].bool()]), f"{padding} L{layer} row {row}"
                worst = max(worst, assert_close_to_alone(captured[row], alone[row][index][0] if index < len(layers)
                                                          else capture_residual(model, torch.tensor([seq]), None, layer)[0],
                                                          f"{name} {padding}-padded layer {layer} row {row}"))
        # The layer's input, one entry earlier, is a different thing (guards against an off-by-one).
        assert not torch.allclose(captured[0], batch[len(layers) - 2 + offset][0][mask[0].bool()])
    print(f"\n{name}: {len(layers)} layers, worst |capture - row alone| / scale = {worst:.2e}")


@pytest.mark.parametrize("name", NAMES)
def test_eager_attention_too(name, models):
    """The same checks with eager attention (the default above is sdpa where a family has it): the last layer's
    capture equals each row alone, right- and left-padded, and equals the sdpa model's capture."""
    sdpa = models(name)
    model = copy.deepcopy(sdpa)
    model.set_attn_implementation("eager")
    last = len(find_decoder_layers(model)) - 1
    paddings = [pad_right(SEQUENCES, 0)] + ([] if name in LEFT_PADDING_LEAKS else [left_pad(SEQUENCES)])
    for ids, mask in paddings:
        eager = capture_residual(model, ids, mask, last, padding_check="off")
        reference = capture_residual(sdpa, ids, mask, last, padding_check="off")
        for row, seq in enumerate(SEQUENCES):
            assert_close_to_alone(eager[row], capture_residual(model, torch.tensor([seq]), None, last)[0], f"{name} eager row {row}")
            assert_close_to_alone(eager[row], reference[row], f"{name} eager vs sdpa row {row}")


@pytest.mark.parametrize("name", NAMES)
def test_forward_stops_after_the_layer(name, models):
    model = models(name)
    layers = find_decoder_layers(model)
    calls = []
    watched = [layers[1], *layers[2:]]
    hooks = [m.register_forward_hook(lambda *_a, i=i: calls.append(i)) for i, m in enumerate(watched)]
    hooks_before = list(layers[0]._forward_hooks)  # transformers keeps its own output-recording hooks
    lm_head = model.get_output_embeddings()
    hooks.append(lm_head.register_forward_hook(lambda *_a: calls.append("lm_head")))
    try:
        capture_residual(model, torch.tensor([SEQUENCES[2]]), None, 0)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [], f"{name}: ran after layer 0: {calls}"
    assert list(layers[0]._forward_hooks) == hooks_before  # the capture hook is gone


@pytest.mark.parametrize("name", [n for n in NAMES if FAMILIES[n].moe])
def test_moe_layer_returning_a_tuple(name, models):
    """Older and some MoE decoder layers return (hidden, router_logits, ...): capture reads element 0."""
    model = models(name)
    layers = find_decoder_layers(model)
    seq = SEQUENCES[0]
    expected = capture_residual(model, torch.tensor([seq]), None, 1)[0]
    router = torch.zeros(len(seq), 4)
    handle = layers[1].register_forward_hook(lambda _m, _a, out: (out[0] if isinstance(out, tuple) else out, router))
    try:
        as_tuple = capture_residual(model, torch.tensor([seq]), None, 1)[0]
    finally:
        handle.remove()
    assert torch.equal(as_tuple, expected)


def test_families_whose_layers_return_tuples(models):
    """Falcon-H1 and Bamba decoder layers return tuples in the pinned transformers: the natural tuple path."""
    tuple_families = []
    for name in NAMES:
        model = models(name)
        seen = []
        handle = find_decoder_layers(model)[0].register_forward_hook(lambda _m, _a, out: seen.append(isinstance(out, tuple)))
        try:
            capture_residual(model, torch.tensor([SEQUENCES[1]]), None, 0)
        finally:
            handle.remove()
        if seen[0]:
            tuple_families.append(name)
    assert {"falcon_h1", "bamba"} <= set(tuple_families)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_against_float32(name, models):
    """Every layer of a bf16 copy (hidden_states of one batch forward; capture equals it, as tested above)."""
    reference = models(name)
    model = copy.deepcopy(reference).to(torch.bfloat16)  # the same weights, rounded to bf16
    ids, mask = pad_right(SEQUENCES, 0)
    with torch.no_grad():
        full = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states
        half = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states
    layers = len(find_decoder_layers(model))
    offset = FAMILIES[name].hidden_states_offset
    captured = capture_residual(model, ids, mask, layers - 2, padding_check="off")
    worst_max = worst_rms = worst_alone = 0.0
    for row, seq in enumerate(SEQUENCES):
        keep = mask[row].bool()
        # bf16, except the Mamba families, which keep the residual in float32 (residual_in_fp32).
        expected_dtype = torch.float32 if getattr(model.config, "residual_in_fp32", False) else torch.bfloat16
        assert captured[row].dtype == expected_dtype and torch.equal(captured[row], half[layers - 2 + offset][row][keep])
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([seq]), output_hidden_states=True, use_cache=False).hidden_states
        for layer in range(offset, layers):  # hidden_states[layers] is after the final norm: not a capture point
            f32, b16 = full[layer][row][keep], half[layer][row][keep].float()
            err = b16 - f32
            worst_max = max(worst_max, float(err.abs().max() / f32.abs().max()))
            worst_rms = max(worst_rms, float(err.pow(2).mean().sqrt() / f32.pow(2).mean().sqrt()))
            # Padded bf16 rows against the row alone in bf16: a different batch shape may round differently.
            one = alone[layer][0].float()
            worst_alone = max(worst_alone, float((b16 - one).abs().max() / one.abs().max()))
    print(f"\n{name}: bf16 vs float32 worst relative max-abs {worst_max:.2e}, RMS {worst_rms:.2e}; "
          f"bf16 padded vs alone {worst_alone:.2e}")
    assert worst_max <= BF16_MAX_RTOL and worst_rms <= BF16_RMS_RTOL
    assert worst_alone <= BF16_ALONE_RTOL


@pytest.mark.parametrize("name", NAMES)
def test_padding_guard_passes(name, models):
    model = models(name)
    ids, mask = left_pad(SEQUENCES)
    result = check_padding(model, ids, mask, 1)
    assert result is not None and result.row == 1 and result.pads == 21
    if name in LEFT_PADDING_LEAKS:
        assert not result.ok and result.relative_diff > 1e-3, result
        with pytest.raises(PaddingLeakError):
            capture_residual(model, ids, mask, 1, padding_check="always")
        ids, mask = pad_right(SEQUENCES, 0)
        result = check_padding(model, ids, mask, 1)
    assert result.ok and result.relative_diff < 1e-5, result
    # The run-time guard (mode "always") raises nothing on a healthy model.
    capture_residual(model, ids, mask, 1, padding_check="always")


class _LeakyMask:
    """Makes layer 0 see the mean over every position of the row, pads included (a kernel ignoring the mask)."""

    def __init__(self, layer: torch.nn.Module):
        self.handle = layer.register_forward_pre_hook(self.leak, with_kwargs=True)

    @staticmethod
    def leak(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        leaked = hidden + hidden.mean(dim=1, keepdim=True)
        if args:
            return (leaked, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": leaked}


@pytest.mark.parametrize("name", ["qwen3_5", "nemotron_h", "lfm2"])
def test_padding_guard_catches_a_leak(name):
    model = build(name)
    ids, mask = pad_right(SEQUENCES, 0)
    leak = _LeakyMask(find_decoder_layers(model)[0])
    try:
        result = check_padding(model, ids, mask, 1)
        assert result is not None and not result.ok and result.relative_diff > 1e-2
        with pytest.raises(PaddingLeakError, match="row 1 \\(21 pads\\)"):
            capture_residual(model, ids, mask, 1)  # default mode "once": the first padded batch is checked
        capture_residual(model, ids, mask, 1)  # "once": checked already, no second re-run
        with pytest.raises(PaddingLeakError):
            capture_residual(model, ids, mask, 1, padding_check="always")
        capture_residual(model, ids, mask, 1, padding_check="off")
    finally:
        leak.handle.remove()


def test_padding_check_mode_is_validated(monkeypatch, models):
    monkeypatch.setenv("MECHREWARD_PADDING_CHECK", "sometimes")
    with pytest.raises(ValueError, match="MECHREWARD_PADDING_CHECK"):
        capture_residual(models("qwen3_5"), torch.tensor([[1, 2]]), None, 0)


def test_every_hybrid_family_in_transformers_is_tested_or_refused():
    """A transformers upgrade that adds a hybrid family fails here until it gets a tiny config or a reason."""
    import pkgutil
    import re

    import transformers.models as tm

    # A causal or conditional-generation LM whose configuration names a non-attention layer kind.
    marker = re.compile(r"linear_attention|mamba|[\"']conv[\"']|recurrent|gated_delta|lightning|[\"']kda[\"']|short_conv|ssm_state", re.I)
    present = set()
    for info in pkgutil.iter_modules(tm.__path__):
        folder = f"{tm.__path__[0]}/{info.name}"
        try:
            config = open(f"{folder}/configuration_{info.name}.py").read()
            modeling = open(f"{folder}/modeling_{info.name}.py").read()
        except OSError:
            continue
        if re.search(r"ForCausalLM\b|ForConditionalGeneration\b", modeling) and marker.search(config):
            present.add(info.name)
    covered = {n.split(":")[0] for n in FAMILIES} | set(REFUSED)
    missing = sorted(present - covered)
    assert not missing, f"hybrid-looking families neither tested nor refused: {missing}"


def test_padding_check_command(tmp_path, capsys, models):
    """`python -m mechreward_client.capture MODEL --layer N`: exit 0 on a sound model, 1 on a leak (RecurrentGemma
    left padding), one JSON line per layer and side."""
    import json

    from mechreward_client.capture import main

    models("qwen3_5").save_pretrained(tmp_path / "qwen3_5")
    models("recurrent_gemma").save_pretrained(tmp_path / "recurrent_gemma")
    assert main([str(tmp_path / "qwen3_5"), "--layer", "0", "--layer", "2", "--pads", "40"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["layer"], r["padding"], r["ok"]) for r in lines] == [(0, "right", True), (0, "left", True), (2, "right", True), (2, "left", True)]
    assert main([str(tmp_path / "recurrent_gemma"), "--layer", "0", "--pads", "40"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["padding"], r["ok"]) for r in lines] == [("right", True), ("left", False)]
