"""capture_residual equals hidden_states[layer + 1] of a full forward, stops after the layer, and finds the
layer list in plain, PEFT-wrapped and multimodal models."""

from __future__ import annotations

import pytest
import torch

from mechreward_client import capture_residual, find_decoder_layers
from mechreward_client.capture import pad_right

from support import TINY_LAYERS, tiny_llama, tiny_llama_config

SEQUENCES = [[5, 9, 13, 4, 22, 7, 1], [8, 3, 60], [11, 12, 13, 14, 15]]


def left_pad(sequences, pad_id=0):
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(sequences):
        ids[r, width - len(s):] = torch.tensor(s)
        mask[r, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def full_forward_hidden(model, sequence):
    out = model(input_ids=torch.tensor([sequence]), output_hidden_states=True, use_cache=False)
    return out.hidden_states


@pytest.mark.parametrize("layer", range(TINY_LAYERS - 1))
def test_equals_hidden_states_layer_plus_one(layer):
    model = tiny_llama()
    ids, mask = pad_right(SEQUENCES, 0)
    captured = capture_residual(model, ids, mask, layer)
    assert [c.shape for c in captured] == [torch.Size([len(s), 64]) for s in SEQUENCES]
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states
    for row, seq in enumerate(SEQUENCES):
        # Same batch, same kernels: bit-identical to the full forward's hidden_states[layer + 1].
        assert torch.equal(captured[row], batch[layer + 1][row][mask[row].bool()])
        # And to an unpadded forward of the sequence alone.
        alone = full_forward_hidden(model, seq)
        torch.testing.assert_close(captured[row], alone[layer + 1][0], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(captured[row], alone[layer][0])  # hidden_states[layer] is the layer's input


def test_left_padding_gets_real_positions():
    model = tiny_llama()
    ids, mask = left_pad(SEQUENCES)
    captured = capture_residual(model, ids, mask, 1)
    for row, seq in enumerate(SEQUENCES):
        torch.testing.assert_close(captured[row], full_forward_hidden(model, seq)[2][0], rtol=1e-5, atol=1e-6)


def test_last_layer_is_the_raw_output_not_the_final_norm():
    model = tiny_llama()
    seq = SEQUENCES[0]
    last = capture_residual(model, torch.tensor([seq]), None, TINY_LAYERS - 1)[0]
    hidden = full_forward_hidden(model, seq)
    assert not torch.allclose(last, hidden[TINY_LAYERS][0])  # hidden_states[N] is after model.norm
    torch.testing.assert_close(model.model.norm(last), hidden[TINY_LAYERS][0])


def test_forward_stops_after_the_layer_and_mode_is_restored():
    model = tiny_llama().train()
    calls = []
    hooks = [model.model.layers[2].register_forward_hook(lambda *a: calls.append("layer2")),
             model.model.norm.register_forward_hook(lambda *a: calls.append("norm")),
             model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))]
    try:
        capture_residual(model, torch.tensor([SEQUENCES[0]]), None, 1)
    finally:
        for h in hooks:
            h.remove()
    assert calls == []
    assert model.training  # eval() only for the capture pass
    assert not model.model.layers[1]._forward_hooks  # the capture hook is gone


def test_bf16_model_gives_bf16_activations():
    model = tiny_llama(dtype=torch.bfloat16)
    out = capture_residual(model, torch.tensor([SEQUENCES[1]]), None, 0)[0]
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, full_forward_hidden(model, SEQUENCES[1])[1][0])


def test_peft_wrapped_model():
    from peft import LoraConfig, get_peft_model

    base = tiny_llama()
    # init_lora_weights=False: non-zero adapters, so the adapted model really differs from the base one.
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    assert find_decoder_layers(peft_model) is base.model.layers
    seq = SEQUENCES[2]
    captured = capture_residual(peft_model, torch.tensor([seq]), None, 1)[0]
    with torch.no_grad():
        hidden = peft_model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
        with peft_model.disable_adapter():
            base_hidden = peft_model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
    assert torch.equal(captured, hidden[2][0])
    assert not torch.allclose(captured, base_hidden[2][0])  # the LoRA layers took part


def test_multimodal_wrapper_layer_list():
    """A Llava-style model keeps its decoder at model.language_model.layers; text-only forward."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=tiny_llama_config(), image_token_index=63)
    model = LlavaForConditionalGeneration(config).eval()
    layers = find_decoder_layers(model)
    assert layers is model.model.language_model.layers
    seq = SEQUENCES[0]
    captured = capture_residual(model, torch.tensor([seq]), None, 2)[0]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
    assert torch.equal(captured, hidden[3][0])


def test_bad_arguments():
    model = tiny_llama()
    with pytest.raises(ValueError, match="layer 4 out of range"):
        capture_residual(model, torch.tensor([[1, 2]]), None, TINY_LAYERS)
    with pytest.raises(ValueError, match="no decoder layer list"):
        find_decoder_layers(torch.nn.Linear(2, 2))
