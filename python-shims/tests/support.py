"""Test support: the real TypeScript sidecar on free ports, a tiny causal LM built in code, and packs.

Nothing here fakes the server or the model: the sidecar is `node bin/mechreward.js serve`, the model a real
(randomly initialised) transformers Llama, the tokenizer a real word-level `tokenizers` model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass

import numpy as np

from mechreward_client.launch import LaunchedSidecar, launch_sidecar

SHIMS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SHIMS)
SIDECAR_BIN = os.path.join(REPO, "bin", "mechreward.js")
SIDECAR_READY_TIMEOUT_S = 90.0


def ensure_sidecar_built() -> None:
    """Build dist/ once if this checkout has never been built (CI runs `npm test`, which builds, first)."""
    if os.path.isfile(os.path.join(REPO, "dist", "src", "cli.js")):
        return
    if not os.path.isdir(os.path.join(REPO, "node_modules")):
        subprocess.run(["npm", "ci"], cwd=REPO, check=True)
    subprocess.run(["npm", "run", "build", "--silent"], cwd=REPO, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The launcher the package ships (mechreward_client.launch): the same object tests, pipelines and users get.
Sidecar = LaunchedSidecar


def start_sidecar(packs_dir: str, *extra_args: str, grpc_port: int = 0, wait_ready: bool = True, env: dict[str, str] | None = None,
                  prefix: tuple[str, ...] = ()) -> Sidecar:
    """Start the real sidecar and wait for its `mechreward ready` log line (JSON on stderr). ``prefix`` runs
    it under another command (e.g. ``unshare -m`` for a mount namespace of its own)."""
    ensure_sidecar_built()
    command = [*prefix,
        "node", SIDECAR_BIN, "serve", "--packs", packs_dir,
        "--grpc-port", str(grpc_port), "--http-port", "0", "--host", "127.0.0.1",
        # Test packs are synthetic, with no stage-gate-1 validation block.
        "--allow-unvalidated", "--runs-db", "", *extra_args,
    ]
    sidecar = launch_sidecar(command, cwd=REPO, env=env, ready_timeout=SIDECAR_READY_TIMEOUT_S, wait_ready=wait_ready)
    if not wait_ready:
        sidecar.grpc_port = grpc_port  # the caller chose it; the process may not have bound it yet
    return sidecar


class ReaderProcess:
    """The real reader service (`python -m mechreward_client.reader`) on a port the system picks, for the
    sidecar's OpenRLHF route (`serve --reader-url`)."""

    def __init__(self, model_dir: str, tokenizer_dir: str | None = None, timeout: float = 120.0) -> None:
        command = [sys.executable, "-m", "mechreward_client.reader", "--model", model_dir, "--port", "0"]
        if tokenizer_dir:
            command += ["--tokenizer", tokenizer_dir]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()
        self.port = 0

        def drain() -> None:  # also keeps the pipe from filling up
            for line in self.process.stderr:
                if not ready.is_set() and line.startswith("{"):
                    self.port = json.loads(line)["port"]
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout):
            self.process.kill()
            raise RuntimeError("reader did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


# --- packs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopKSae:
    W_enc: np.ndarray  # [d_model, d_sae]
    b_enc: np.ndarray
    W_dec: np.ndarray  # [d_sae, d_model]
    b_dec: np.ndarray
    k: int


def random_topk_sae(d_model: int, d_sae: int, k: int, seed: int, scale: float = 1.0) -> TopKSae:
    rng = np.random.default_rng(seed)
    W_enc = (rng.normal(size=(d_model, d_sae)) * scale / np.sqrt(d_model)).astype(np.float32)
    W_dec = rng.normal(size=(d_sae, d_model)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    b_enc = (rng.normal(size=d_sae) * 0.01).astype(np.float32)
    b_dec = (rng.normal(size=d_model) * 0.01).astype(np.float32)
    return TopKSae(W_enc, b_enc, W_dec, b_dec, k)


def write_pack(pack_dir: str, sae: TopKSae, *, layer: int, features: list[tuple[int, float]], name: str | None = None) -> None:
    """A pack in this project's schema with a SAELens-layout TopK SAE (float32)."""
    from safetensors.numpy import save_file

    sae_dir = os.path.join(pack_dir, "sae")
    os.makedirs(sae_dir, exist_ok=True)
    d_model, d_sae = sae.W_enc.shape
    cfg = {
        "d_in": d_model, "d_sae": d_sae, "architecture": "topk", "k": sae.k,
        "apply_b_dec_to_input": True, "normalize_activations": "none", "dtype": "float32",
        "metadata": {"hook_name": f"blocks.{layer}.hook_resid_post"},
    }
    with open(os.path.join(sae_dir, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    save_file({"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec},
              os.path.join(sae_dir, "sae_weights.safetensors"))
    pack = {
        "schema": "mechreward.pack/v1",
        "name": name or os.path.basename(pack_dir),
        "model": "tiny-llama-test",
        "layer": layer,
        "features": [{"id": int(i), "weight": float(w)} for i, w in features],
        "pooling": {"method": "mean"},
    }
    with open(os.path.join(pack_dir, "pack.json"), "w") as f:
        json.dump(pack, f)


def reference_token_rewards(x: np.ndarray, sae: TopKSae, features: list[tuple[int, float]]) -> np.ndarray:
    """float64 TopK encode + weighted feature sum per token (docs/domain.md §3, §5)."""
    h = (x.astype(np.float64) - sae.b_dec) @ sae.W_enc.astype(np.float64) + sae.b_enc
    top = np.argsort(-h, axis=1, kind="stable")[:, : sae.k]
    f = np.zeros_like(h)
    np.put_along_axis(f, top, np.maximum(np.take_along_axis(h, top, axis=1), 0.0), axis=1)
    return sum(w * f[:, i] for i, w in features)


# --- a tiny causal LM, built offline ------------------------------------------------------------------------

VOCAB = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(61)]
TINY_HIDDEN = 64
TINY_LAYERS = 4


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def tiny_llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=TINY_HIDDEN, intermediate_size=128, num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True,
    )


def tiny_llama(seed: int = 0, dtype=None):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config())
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def word_prompts(count: int, seed: int, min_words: int = 3, max_words: int = 6) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(f"w{int(i)}" for i in rng.integers(0, 61, size=int(rng.integers(min_words, max_words + 1))))
        for _ in range(count)
    ]


# --- a reader fixture: the tiny Qwen2 of docs (integrations §6) saved to disk, and a pack on its layer -------

QWEN_HIDDEN = 32
QWEN_LAYERS = 2


def tiny_qwen2(seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=len(VOCAB), hidden_size=QWEN_HIDDEN, intermediate_size=64, num_hidden_layers=QWEN_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg).eval()


@dataclass(frozen=True)
class ReaderFixture:
    model_dir: str  # the model, loadable with from_pretrained(local_files_only=True)
    tokenizer_dir: str
    packs_dir: str
    pack: str
    layer: int
    sae: TopKSae
    features: list[tuple[int, float]]


def write_reader_fixture(root: str, *, layer: int = 0, pack: str = "tiny-qwen2") -> ReaderFixture:
    """Save the tiny Qwen2 under root/reader, its tokenizer under root/tokenizer, and a TopK pack at its ``layer`` under root/packs.

    The pack's SAE is random with k = 40 of 96, so each pack feature fires on about 40 % of tokens; weights mix signs.
    """
    model_dir = os.path.join(root, "reader")
    tiny_qwen2().save_pretrained(model_dir)
    # The tokenizer gets its own folder: beside a Qwen2 config.json, AutoTokenizer would build Qwen2's byte-level
    # tokenizer class around this word-level vocabulary and split the words differently.
    tokenizer_dir = os.path.join(root, "tokenizer")
    tiny_tokenizer().save_pretrained(tokenizer_dir)
    sae = random_topk_sae(QWEN_HIDDEN, 96, 40, seed=11, scale=4.0)
    features = [(3, 1.0), (17, -0.5), (40, 0.75), (77, 2.0), (90, -1.25)]
    packs_dir = os.path.join(root, "packs")
    write_pack(os.path.join(packs_dir, pack), sae, layer=layer, features=features, name=pack)
    return ReaderFixture(model_dir, tokenizer_dir, packs_dir, pack, layer, sae, features)


def reference_rewards_for_ids(model_dir: str, ids: list[int], layer: int, fixture: ReaderFixture) -> np.ndarray:
    """float64 per-token rewards of ``ids``, from ``hidden_states[layer + 1]`` of a plain full forward.

    Independent of the adapters' hook-based capture: a fresh model load, the whole network run, the §2 index.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    x = out.hidden_states[layer + 1][0].double().numpy()
    return reference_token_rewards(x, fixture.sae, fixture.features)
