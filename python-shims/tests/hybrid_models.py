"""Tiny random models of every hybrid family in the pinned transformers, built in code (nothing downloaded).

Each family's config is shrunk to hidden 64, a few layers and few heads, with a layer list that contains every
layer kind the family has (linear attention / SSM / short conv beside full or sliding attention, dense MLP
beside MoE). After the random init, every parameter that came out constant (zeros, ones: output projections,
norm weights, gates, biases) is nudged with seeded noise, so no zero-initialised block can hide a difference.

``FAMILIES`` maps a name to a builder; ``build(name, dtype)`` returns an eval-mode model on the CPU.
``REFUSED`` lists the families in the pinned transformers that are not tested here, with the reason.
(The text-only "ForCausalLM" of a family with a multimodal wrapper is the same decoder; the wrapper is a family
entry of its own, ``<type>:vl``, run with text input only.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

VOCAB_SIZE = 64  # the word-level test tokenizer's vocabulary (support.VOCAB)
HIDDEN = 64
PAD, EOS = 0, 1
NUDGE = 0.05


@dataclass(frozen=True)
class Family:
    name: str  # transformers model_type of the text model (or "<type>:vl" for a multimodal wrapper)
    layer_kinds: str  # what the tiny config mixes, for the docs table
    make: Callable[[], torch.nn.Module]
    moe: bool = False
    multimodal: bool = False
    # hidden_states[layer + offset] is decoder layer ``layer``'s output. 1 for almost every model (entry 0 is
    # the embeddings); 0 for the Mamba families, whose hidden_states hold no embedding entry.
    hidden_states_offset: int = 1


_COMMON = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
               tie_word_embeddings=True, max_position_embeddings=256)


def _nudge(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded noise on every parameter that is constant after init (a zero o_proj or gate hides a leak)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            flat = p.detach().flatten()
            if flat.numel() == 0 or bool((flat == flat[0]).all()):
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * NUDGE)
    return model


def _gdn(**extra):
    """Gated DeltaNet fields shared by the Qwen3.5 / Qwen3-Next family, scaled to hidden 64."""
    return dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_conv_kernel_dim=4,
                linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                **extra)


def qwen3_5_text_config():
    from transformers import Qwen3_5TextConfig

    return Qwen3_5TextConfig(**_COMMON, **_gdn(intermediate_size=128, num_hidden_layers=4,
                             layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"]))


def qwen3_5_moe_text_config():
    from transformers import Qwen3_5MoeTextConfig

    return Qwen3_5MoeTextConfig(**_COMMON, **_gdn(num_hidden_layers=4, moe_intermediate_size=32,
                                shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                                layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"]))


def _qwen3_5():
    from transformers import Qwen3_5ForCausalLM

    return Qwen3_5ForCausalLM(qwen3_5_text_config())


def _qwen3_5_moe():
    from transformers import Qwen3_5MoeForCausalLM

    return Qwen3_5MoeForCausalLM(qwen3_5_moe_text_config())


def _qwen3_next():
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    return Qwen3NextForCausalLM(Qwen3NextConfig(**_COMMON, **_gdn(
        intermediate_size=128, num_hidden_layers=4, moe_intermediate_size=32, shared_expert_intermediate_size=32,
        num_experts=4, num_experts_per_tok=2, mlp_only_layers=[0],
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"])))


def _qwen4_exp():
    from transformers import Qwen4ExpForCausalLM
    from transformers.models.qwen4_exp.configuration_qwen4_exp import Qwen4ExpTextConfig

    # Gated DeltaNet + QSA-indexed attention, MoE, 4 hyper-connection residual streams, n-gram per-layer
    # embeddings (PLE) on the linear-attention layers.
    return Qwen4ExpForCausalLM(Qwen4ExpTextConfig(**_COMMON, **_gdn(
        num_hidden_layers=4, moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
        num_experts_per_tok=2, layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        hc_lowrank=8, ple_layer_ids=[1, 3], ngram_vocab_size_base=1000, heads_per_ngram=2, split_ngram_parts=1,
        indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=16, indexer_budget=8, indexer_compress_ratio=2)))


def _glm5_next():
    from transformers import Glm5NextConfig, Glm5NextForConditionalGeneration
    from transformers.models.glm5_next.configuration_glm5_next import Glm5NextTextConfig, Glm5NextVisionConfig

    # Linear attention + indexed MLA attention, dense and MoE MLP; only a multimodal class exists (text input).
    text = Glm5NextTextConfig(
        **_COMMON, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, kv_lora_rank=16,
        q_lora_rank=16, qk_rope_head_dim=0, v_head_dim=16, qk_nope_head_dim=16, mlp_layer_types=["dense", "sparse", "dense", "sparse"],
        layer_types=["linear_attention", "indexed_attention", "linear_attention", "indexed_attention"],
        index_topk=8, index_head_dim=16, index_n_heads=2, linear_head_dim=16, linear_num_heads=4, index_kpool=2)
    vision = Glm5NextVisionConfig(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=HIDDEN,
                                  projection_intermediate_size=64)
    return Glm5NextForConditionalGeneration(Glm5NextConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), image_token_id=VOCAB_SIZE - 1,
        video_token_id=VOCAB_SIZE - 2, image_start_token_id=VOCAB_SIZE - 3, image_end_token_id=VOCAB_SIZE - 4,
        video_start_token_id=VOCAB_SIZE - 5, video_end_token_id=VOCAB_SIZE - 6, tie_word_embeddings=True))


def gemma4_text_config():
    from transformers import Gemma4TextConfig

    # Sliding and full attention, a MoE block beside the dense MLP, and the last two layers sharing the KV of
    # earlier ones (num_kv_shared_layers), with per-layer inputs.
    return Gemma4TextConfig(
        **_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        vocab_size_per_layer_input=VOCAB_SIZE, hidden_size_per_layer_input=8, num_kv_shared_layers=2,
        enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32, per_layer_config={},
    )


def _gemma4():
    from transformers import Gemma4ForCausalLM

    return Gemma4ForCausalLM(gemma4_text_config())


def _nemotron_h():
    from transformers import NemotronHConfig, NemotronHForCausalLM

    return NemotronHForCausalLM(NemotronHConfig(
        **_COMMON, layers_block_type=["linear_attention", "moe", "full_attention", "mlp"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
        use_mamba_kernels=False, ssm_state_size=16, mamba_num_heads=4, mamba_head_dim=32, n_groups=2,
        conv_kernel=4, n_routed_experts=4, n_shared_experts=1, moe_intermediate_size=32,
        moe_shared_expert_intermediate_size=32, num_experts_per_tok=2, mamba_chunk_size=8,
    ))


def _falcon_h1():
    from transformers import FalconH1Config, FalconH1ForCausalLM

    # Every Falcon-H1 layer runs attention and a Mamba-2 mixer in parallel.
    return FalconH1ForCausalLM(FalconH1Config(
        **_COMMON, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1, mamba_d_state=16,
        mamba_d_conv=4, mamba_chunk_size=8,
    ))


def _jamba():
    from transformers import JambaConfig, JambaForCausalLM

    return JambaForCausalLM(JambaConfig(
        **_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1,
        attn_layer_period=2, attn_layer_offset=1, use_mamba_kernels=False, mamba_d_state=8, mamba_dt_rank=8,
    ))


def _bamba():
    from transformers import BambaConfig, BambaForCausalLM

    return BambaForCausalLM(BambaConfig(
        **_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head=32, mamba_n_groups=1, mamba_d_state=16,
        mamba_chunk_size=8,
    ))


def lfm2_config():
    from transformers import Lfm2Config

    return Lfm2Config(**_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, block_multiple_of=16,
                      layer_types=["conv", "full_attention", "conv", "full_attention"])


def _lfm2():
    from transformers import Lfm2ForCausalLM

    return Lfm2ForCausalLM(lfm2_config())


def _lfm2_moe():
    from transformers import Lfm2MoeConfig, Lfm2MoeForCausalLM

    return Lfm2MoeForCausalLM(Lfm2MoeConfig(
        **_COMMON, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, num_dense_layers=1, num_experts=4, num_experts_per_tok=2,
        layer_types=["conv", "full_attention", "conv", "full_attention"],
    ))


def lfm3_config():
    from transformers import Lfm3Config

    return Lfm3Config(**_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, sliding_window=4,
                      layer_types=["conv", "full_attention", "conv", "sliding_attention"])


def _lfm3():
    from transformers import Lfm3ForCausalLM

    return Lfm3ForCausalLM(lfm3_config())


def _granitemoehybrid():
    from transformers import GraniteMoeHybridConfig, GraniteMoeHybridForCausalLM

    return GraniteMoeHybridForCausalLM(GraniteMoeHybridConfig(
        **_COMMON, intermediate_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=64,
        layer_types=["mamba", "attention", "mamba", "attention"], mamba_n_heads=4, mamba_d_head=32,
        mamba_n_groups=1, mamba_d_state=16, mamba_chunk_size=8,
    ))


def _kimi_linear():
    from transformers import KimiLinearConfig, KimiLinearForCausalLM

    return KimiLinearForCausalLM(KimiLinearConfig(
        **_COMMON, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, num_shared_experts=1, kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8,
        v_head_dim=16, qk_nope_head_dim=8, num_experts_per_token=2, num_experts=4,
        mlp_layer_types=["dense", "sparse", "dense", "sparse"],
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        linear_head_dim=16, linear_num_heads=4, linear_conv_kernel_dim=4,
    ))


def _bailing_hybrid():
    from transformers import BailingHybridConfig, BailingHybridForCausalLM

    return BailingHybridForCausalLM(BailingHybridConfig(
        **_COMMON, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, num_shared_experts=1, kv_lora_rank=16, qk_rope_head_dim=8, v_head_dim=16,
        qk_nope_head_dim=8, num_expert_group=1, topk_group=1, num_experts_per_token=2, num_experts=4, head_dim=16,
        num_nextn_predict_layers=0, layer_group_size=2,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        mlp_layer_types=["dense", "sparse", "dense", "sparse"], linear_head_dim=16, linear_num_heads=4,
    ))


def _olmo_hybrid():
    from transformers import OlmoHybridConfig, OlmoHybridForCausalLM

    return OlmoHybridForCausalLM(OlmoHybridConfig(
        **_COMMON, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=32,
    ))


def _minimax():
    from transformers import MiniMaxConfig, MiniMaxForCausalLM

    return MiniMaxForCausalLM(MiniMaxConfig(
        **_COMMON, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, num_local_experts=4, num_experts_per_tok=2, block_size=4,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
    ))


def _zamba():
    from transformers import ZambaConfig, ZambaForCausalLM

    return ZambaForCausalLM(ZambaConfig(
        **_COMMON, attention_hidden_size=128, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        attention_head_dim=32, num_key_value_heads=4, n_mamba_heads=2,
        layers_block_type=["mamba", "hybrid", "mamba", "hybrid"], use_mamba_kernels=False, mamba_d_state=8, mamba_dt_rank=8,
    ))


def _zamba2():
    from transformers import Zamba2Config, Zamba2ForCausalLM

    return Zamba2ForCausalLM(Zamba2Config(
        **_COMMON, num_hidden_layers=4, layers_block_type=["mamba", "hybrid", "mamba", "hybrid"],
        mamba_d_state=16, mamba_ngroups=1, n_mamba_heads=4, use_mamba_kernels=False, intermediate_size=128,
        num_attention_heads=4, num_key_value_heads=4, mamba_headdim=32, chunk_size=8,
    ))


def _recurrent_gemma():
    from transformers import RecurrentGemmaConfig, RecurrentGemmaForCausalLM

    return RecurrentGemmaForCausalLM(RecurrentGemmaConfig(
        **_COMMON, num_hidden_layers=3, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, lru_width=64, attention_window_size=8, block_types=["recurrent", "recurrent", "attention"],
    ))


def _mamba():
    from transformers import MambaConfig, MambaForCausalLM

    return MambaForCausalLM(MambaConfig(**_COMMON, state_size=8, num_hidden_layers=2, intermediate_size=128,
                                        time_step_rank=8))


def _mamba2():
    from transformers import Mamba2Config, Mamba2ForCausalLM

    return Mamba2ForCausalLM(Mamba2Config(**_COMMON, num_heads=4, head_dim=32, state_size=16, num_hidden_layers=2,
                                          n_groups=1, chunk_size=8, expand=2))


def _falcon_mamba():
    from transformers import FalconMambaConfig, FalconMambaForCausalLM

    return FalconMambaForCausalLM(FalconMambaConfig(**_COMMON, state_size=8, num_hidden_layers=2,
                                                    intermediate_size=128, time_step_rank=8))


def _tiny_vision(config_cls, **extra):
    return config_cls(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, **extra)


def _qwen3_5_vl():
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration
    from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5VisionConfig

    config = Qwen3_5Config(text_config=qwen3_5_text_config().to_dict(), vision_config=_tiny_vision(Qwen3_5VisionConfig).to_dict(),
                           image_token_id=VOCAB_SIZE - 1, video_token_id=VOCAB_SIZE - 2, vision_start_token_id=VOCAB_SIZE - 3,
                           vision_end_token_id=VOCAB_SIZE - 4, tie_word_embeddings=True)
    return Qwen3_5ForConditionalGeneration(config)


def _qwen3_5_moe_vl():
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration
    from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeVisionConfig

    config = Qwen3_5MoeConfig(text_config=qwen3_5_moe_text_config().to_dict(),
                              vision_config=_tiny_vision(Qwen3_5MoeVisionConfig).to_dict(),
                              image_token_id=VOCAB_SIZE - 1, video_token_id=VOCAB_SIZE - 2,
                              vision_start_token_id=VOCAB_SIZE - 3, vision_end_token_id=VOCAB_SIZE - 4,
                              tie_word_embeddings=True)
    return Qwen3_5MoeForConditionalGeneration(config)


def _gemma4_vl():
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    config = Gemma4Config(text_config=gemma4_text_config().to_dict(), vision_config=None, audio_config=None,
                          image_token_id=VOCAB_SIZE - 1, boi_token_id=VOCAB_SIZE - 2, eoi_token_id=VOCAB_SIZE - 3,
                          tie_word_embeddings=True)
    return Gemma4ForConditionalGeneration(config)


def _lfm2_vl():
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration

    vision = {"model_type": "siglip2_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "patch_size": 16}
    return Lfm2VlForConditionalGeneration(Lfm2VlConfig(text_config=lfm2_config().to_dict(), vision_config=vision,
                                                       image_token_id=VOCAB_SIZE - 1, projector_hidden_size=32))


def _lfm3_vl():
    from transformers import Lfm3VlConfig, Lfm3VlForConditionalGeneration

    vision = {"model_type": "lfm3_vl_vision", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "patch_size": 16}
    return Lfm3VlForConditionalGeneration(Lfm3VlConfig(
        text_config=lfm3_config().to_dict(), vision_config=vision, image_token_id=VOCAB_SIZE - 1,
        video_token_id=VOCAB_SIZE - 2, vision_start_token_id=VOCAB_SIZE - 3, vision_end_token_id=VOCAB_SIZE - 4))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("qwen3_5", "Gated DeltaNet + gated full attention", _qwen3_5),
    Family("qwen3_5_moe", "Gated DeltaNet + gated full attention, MoE MLP (shared expert)", _qwen3_5_moe, moe=True),
    Family("qwen3_next", "Gated DeltaNet + gated full attention, dense and MoE MLP", _qwen3_next, moe=True),
    Family("qwen4_exp", "Gated DeltaNet + QSA-indexed attention, MoE, 4 hyper-connection streams, n-gram PLE",
           _qwen4_exp, moe=True),
    Family("glm5_next:vl", "linear attention + indexed MLA, dense and MoE MLP (multimodal class, text input)",
           _glm5_next, moe=True, multimodal=True),
    Family("gemma4", "sliding + full attention, MoE block, KV-shared layers, per-layer inputs", _gemma4, moe=True),
    Family("nemotron_h", "Mamba-2 / MoE / attention / MLP blocks", _nemotron_h, moe=True),
    Family("falcon_h1", "attention and Mamba-2 in parallel in every layer", _falcon_h1),
    Family("jamba", "Mamba + attention, dense and MoE MLP", _jamba, moe=True),
    Family("bamba", "Mamba-2 + attention", _bamba),
    Family("lfm2", "short convolution + attention", _lfm2),
    Family("lfm2_moe", "short convolution + attention, dense and MoE MLP", _lfm2_moe, moe=True),
    Family("lfm3", "short convolution + full and sliding attention", _lfm3),
    Family("granitemoehybrid", "Mamba-2 + attention, MoE and shared MLP", _granitemoehybrid, moe=True),
    Family("kimi_linear", "Kimi Delta Attention + MLA, dense and MoE MLP", _kimi_linear, moe=True),
    Family("bailing_hybrid", "linear attention + MLA, dense and MoE MLP", _bailing_hybrid, moe=True),
    Family("olmo_hybrid", "Gated DeltaNet + attention", _olmo_hybrid),
    Family("minimax", "lightning (linear) attention + full attention, MoE MLP", _minimax, moe=True),
    Family("zamba", "Mamba + shared attention block", _zamba),
    Family("zamba2", "Mamba-2 + shared attention blocks", _zamba2),
    Family("recurrent_gemma", "RG-LRU recurrent + local attention", _recurrent_gemma),
    Family("mamba", "Mamba only (pure SSM, for comparison)", _mamba, hidden_states_offset=0),
    Family("mamba2", "Mamba-2 only (pure SSM, for comparison)", _mamba2, hidden_states_offset=0),
    Family("falcon_mamba", "Mamba only, RMS-normed B/C/dt (pure SSM, for comparison)", _falcon_mamba, hidden_states_offset=0),
    Family("qwen3_5:vl", "Qwen3.5 multimodal wrapper, text input", _qwen3_5_vl, multimodal=True),
    Family("qwen3_5_moe:vl", "Qwen3.5-MoE multimodal wrapper, text input", _qwen3_5_moe_vl, moe=True, multimodal=True),
    Family("lfm2_vl:vl", "LFM2 multimodal wrapper, text input", _lfm2_vl, multimodal=True),
    Family("lfm3_vl:vl", "LFM3 multimodal wrapper, text input", _lfm3_vl, multimodal=True),
    Family("gemma4:vl", "Gemma-4 multimodal wrapper, text input", _gemma4_vl, moe=True, multimodal=True),
]}

_NO_TINY_CONFIG = ("its configuration has no defaults to shrink (composite config) and the pinned transformers "
                   "ships no reference checkpoint; not yet given a tiny config here")
REFUSED: dict[str, str] = {
    "step3p7": "full and sliding attention with MoE: not a hybrid (the marker words are in its vision configuration)",
    "deepseek_v4": "compressed sparse attention, not a linear-attention or SSM hybrid; not yet given a tiny config here",
    "hrm_text": "hierarchical recurrent stacks of attention layers, not a per-layer hybrid; not yet given a tiny config here",
    "minimax_m3_vl": "full attention with block-indexed sparse attention and MoE (every default layer is full_attention): "
                     "not a linear-attention or SSM hybrid",
    "nemotron3_5_transcribe": "speech-to-text model, not a causal LM the shims score",
    "llava_next_video": "not a hybrid: the marker words appear in its vision configuration only",
}


def build(name: str, dtype: torch.dtype = torch.float32, seed: int = 0, embedding_std: float = 1.0) -> torch.nn.Module:
    """The family's tiny model, nudged, with token embeddings of std ``embedding_std``: 1 makes the residual
    stream O(1) to O(10), not the 0.02 of the default init, so tolerances relative to it mean something. The
    embeddings are tied to the LM head, so sampling wants less (GRPO tests use 0.1: non-degenerate groups)."""
    torch.manual_seed(seed)
    model = _nudge(FAMILIES[name].make(), seed)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, embedding_std, generator=torch.Generator().manual_seed(seed + 1))
    return model.to(dtype).eval()


def num_layers(model: torch.nn.Module) -> int:
    from mechreward_client import find_decoder_layers

    return len(find_decoder_layers(model))
