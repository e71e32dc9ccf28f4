"""TRL's MechReward sends each completion's text and one string per token when it has a run_id, so the sidecar's
monitor keeps a flagged rollout's tokens for the page to colour (its Chromium test is
test/integration/monitor-page.test.ts); and the token strings join to the decoded text on real byte-level BPE
and SentencePiece-style tokenizers, exactly as decoding each whole prefix would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request

import numpy as np
import pytest

from mechreward_client._tokens import token_strings
from mechreward_client.trl import MechReward

from support import random_topk_sae, start_sidecar, tiny_llama, tiny_tokenizer, word_prompts, write_pack

PACK = "tiny-llama-flag-all"
LAYER = 1


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    """A pack on the tiny model with a canary whose threshold (-1) every activation (>= 0) exceeds: every
    rollout is flagged, so the run keeps each one with what the client sent."""
    packs = str(tmp_path_factory.mktemp("flag-all-packs"))
    sae = random_topk_sae(d_model=64, d_sae=128, k=16, seed=5, scale=50.0)
    write_pack(os.path.join(packs, PACK), sae, layer=LAYER, features=[(3, 1.0), (40, -0.5), (90, 2.0)])
    path = os.path.join(packs, PACK, "pack.json")
    with open(path) as f:
        spec = json.load(f)
    spec["canaries"] = [{"name": "always", "feature": 3, "threshold": -1.0}]
    with open(path, "w") as f:
        json.dump(spec, f)
    served = start_sidecar(packs)
    yield served
    assert served.stop() == 0


def flagged_rollouts(sidecar, run_id: str) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1/runs/{run_id}") as response:
        return json.load(response)["recent_flagged"]


@pytest.mark.parametrize("path", ["sync", "async"])
def test_with_a_run_id_flagged_rollouts_carry_the_tokens_and_the_text(sidecar, path):
    model, tokenizer = tiny_llama(seed=2), tiny_tokenizer()
    run_id = f"trl-rollout-text-{path}"
    reward = MechReward(PACK, model=model, tokenizer=tokenizer, target=sidecar.target, run_id=run_id, on_error="raise")
    prompts = word_prompts(3, seed=4)
    completion_ids = [[20, 21, 22, 1], [30, 31], [40, 41, 42, 43, 44]]  # token ids as TRL passes them (1 = <eos>)
    completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    call = reward if path == "sync" else (lambda **kw: asyncio.run(reward.ascore(**kw)))
    rewards = call(prompts=prompts, completions=completions, completion_ids=completion_ids)

    got = flagged_rollouts(sidecar, run_id)[::-1]  # newest first on the API
    assert [r["reward"] for r in got] == pytest.approx(rewards, rel=1e-6)
    for rollout, prompt, ids, text in zip(got, prompts, completion_ids, completions):
        full = tokenizer(text=prompt)["input_ids"] + ids
        assert rollout["text"] == text
        # The word-level tokenizer decodes by joining words with spaces: each token after the first brings one.
        words = tokenizer.convert_ids_to_tokens(full)
        assert rollout["tokens"] == [words[0]] + [" " + w for w in words[1:]]
        assert len(rollout["token_rewards"]) == len(full)


def test_without_a_run_id_nothing_is_decoded(sidecar):
    class WatchedTokenizer:
        """The tiny tokenizer, noting which of its attributes are used: without a run nothing keeps the text or
        the token strings, so neither is made."""

        def __init__(self) -> None:
            self.inner, self.used = tiny_tokenizer(), set()

        def __getattr__(self, name):
            self.used.add(name)
            return getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    tokenizer = WatchedTokenizer()
    reward = MechReward(PACK, model=tiny_llama(seed=2), tokenizer=tokenizer, target=sidecar.target, on_error="raise")
    rewards = reward(prompts=word_prompts(2, seed=1), completions=["w1", "w2"], completion_ids=[[4, 5], [6, 7]])
    assert all(np.isfinite(rewards))
    assert not tokenizer.used & {"decode", "batch_decode", "backend_tokenizer", "convert_ids_to_tokens"}, tokenizer.used


def bpe_tokenizers():
    """A byte-level BPE (GPT-2 / SmolLM2 style) and a Metaspace Unigram (SentencePiece style), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["What is 47 + 5? The answer is 52.", "naïve café déjà vu – 東京 🚀 rocket", "wait, wait, therefore 391"] * 20
    byte_level = Tokenizer(models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte_level.decoder = decoders.ByteLevel()
    byte_level.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                               special_tokens=["<|im_end|>"]))
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    unigram.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=120, special_tokens=["<unk>", "</s>"], unk_token="<unk>"))
    return {"byte-level BPE": PreTrainedTokenizerFast(tokenizer_object=byte_level),
            "SentencePiece-style Unigram": PreTrainedTokenizerFast(tokenizer_object=unigram, unk_token="<unk>")}


def prefix_differences(tokenizer, ids: list[int]) -> list[str]:
    """The quadratic reference: what each token adds to the decoding of the whole prefix before it."""
    out, previous = [], ""
    for i in range(len(ids)):
        current = tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out.append(current[len(previous):] if current.startswith(previous) else
                   tokenizer.decode(ids[i : i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False))
        previous = current
    return out


@pytest.mark.parametrize("kind", ["byte-level BPE", "SentencePiece-style Unigram"])
def test_token_strings_join_to_the_text_like_whole_prefix_decoding(kind):
    tokenizer = bpe_tokenizers()[kind]
    for text in ["What is 47 + 5? The answer is 52.", " naïve café, 東京 🚀 wait wait therefore 391 "]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        strings = token_strings(tokenizer, ids)
        assert len(strings) == len(ids)
        assert strings == prefix_differences(tokenizer, ids)
        if "🚀" not in text:  # a character split across tokens shows as its pieces' own decodings
            assert "".join(strings) == tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert token_strings(tokenizer, []) == []
