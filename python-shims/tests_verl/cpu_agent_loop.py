"""A verl agent loop that generates with the tiny model through transformers, for the CPU tests.

The tiny test tokenizer has no chat template, so verl's ``single_turn_agent`` (which the example runs around
``mechreward_client.verl_cpu.TransformersLLMClient``) cannot build its prompts; this loop joins the messages'
text instead and samples with the same ``verl_cpu.sample_tokens``.
verl's own agent loops ask an LLM server (vLLM, SGLang, TRT-LLM), which needs a GPU. This one is registered the
way verl documents for custom agent loops (``actor_rollout_ref.rollout.agent.agent_loop_config_path``) and returns
a real ``AgentLoopOutput``: the prompt's text tokenized, a sampled continuation of it by the model (seeded by the
prompt's uid and the sample, with a per-request token limit so responses differ in length, as a server's do).
Everything after it (scoring, ``rm_scores``, TransferQueue, advantages) is verl's code and ours.
"""

from __future__ import annotations

import zlib
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput

from mechreward_client.verl_cpu import cached_model, sample_tokens


class TransformersAgentLoop(AgentLoopBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The word-level test tokenizer is not Qwen2's: take verl's default Continuous Token builder (unused here).
        super().__init__(*args, **{**kwargs, "hf_model_type": None})

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        model = cached_model(self.config.actor_rollout_ref.model.path)
        text = " ".join(message["content"] for message in kwargs["raw_prompt"])
        prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        # V1 passes session_id (one per rollout.n sample); the legacy manager passes a per-row priority instead.
        seed = zlib.crc32(f"{kwargs['uid']}/{kwargs.get('session_id', 0)}/{kwargs.get('priority', 0)}".encode())
        limit = 2 + seed % (self.rollout_config.response_length - 1)
        response_ids, _ = sample_tokens(model, prompt_ids, max_new_tokens=limit, seed=seed,
                                        temperature=float(sampling_params.get("temperature", 1.0)),
                                        pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        return AgentLoopOutput(prompt_ids=prompt_ids, response_ids=response_ids, response_mask=[1] * len(response_ids),
                               num_turns=2, metrics=AgentLoopMetrics())
