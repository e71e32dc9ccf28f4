"""The reader: a frozen copy of the base model that turns token ids or text into residual activations.

Trainers whose reward code never sees the policy (verl, OpenRLHF) need their own model to read the residual
stream the pack's SAE was trained on. ``Reader`` holds that model in eval mode with gradients off, and is
shared by the verl and OpenRLHF adapters in this package.

It also runs as a small HTTP service for the sidecar's ``POST /v1/openrlhf/{pack}`` route, which receives
text only (docs/integrations.md of the repo explains why the reader is a Python process):

    python -m mechreward_client.reader --model PATH [--tokenizer PATH] [--host 127.0.0.1] [--port 8090]

``POST /v1/residuals`` with ``{"texts": [str], "prompts": [str], "layer": int}`` answers
``{"d_model": D, "sequences": [{"activations": base64 f32 LE [T, D], "dtype": "f32", "num_tokens": T,
"score_from": S, "tokens": [str]}]}``; ``GET /healthz`` answers ``{"status": "alive", "layers": N}``. Once
bound it prints one JSON line ``{"msg": "reader ready", "port": P}`` to stderr (``--port 0`` picks a port).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from torch import nn

from ._tokens import token_strings
from .capture import capture_residual, find_decoder_layers, pad_right

__all__ = ["Reader", "serve"]

log = logging.getLogger("mechreward_client.reader")

# Largest request body the reader service accepts (texts of a few thousand tokens each fit easily).
MAX_BODY_BYTES = 64 * 1024 * 1024


class Reader:
    """A frozen causal LM and its tokenizer, capturing the residual stream after a decoder layer.

    Args:
        model: the model (a frozen copy of the policy's base model); put in eval mode, gradients off.
        tokenizer: its tokenizer; used only by the text entry points.
        batch_size: rows per forward pass.

    The forward pass runs under a lock: one reader serves the threads of a reward loop one batch at a time.
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.num_layers = len(find_decoder_layers(model))
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: str, *, tokenizer_path: str | None = None, dtype: str = "float32", device: str = "cpu",
                        batch_size: int = 8) -> Reader:
        """Load a reader from a local model folder (and its tokenizer, from ``tokenizer_path`` or the same folder)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"dtype: {dtype!r} is not a torch dtype (float32, bfloat16, float16)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True).to(device)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, local_files_only=True)
        return cls(model, tokenizer, batch_size=batch_size)

    # -- token ids ------------------------------------------------------------------------------------------

    def residuals(self, sequences: Sequence[Sequence[int]], layer: int) -> list[torch.Tensor]:
        """[T_i, d_model] activations after decoder ``layer`` for each token id sequence (no padding inside)."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer: {layer} is out of range for a reader with {self.num_layers} decoder layers")
        out: list[torch.Tensor] = []
        pad = self._pad_id()
        for start in range(0, len(sequences), self.batch_size):
            chunk = sequences[start : start + self.batch_size]
            ids, mask = pad_right(chunk, pad)
            with self._lock:
                out.extend(capture_residual(self.model, ids, mask, layer))
        return out

    # -- text -----------------------------------------------------------------------------------------------

    def encode_query(self, query: str, prompt: str) -> tuple[list[int], int]:
        """Token ids of ``query`` (prompt + response text) and the index of its first response token.

        When the query starts with the prompt (OpenRLHF builds it that way), prompt and response are tokenized
        separately, so the boundary is exact and the prompt's ids match what the policy was given
        (``add_special_tokens=False``, as OpenRLHF tokenizes its prompts). Otherwise the query is tokenized
        whole and the response is taken to start after as many tokens as the prompt alone has.
        """
        tok = self._need_tokenizer()
        prompt_ids = list(tok(prompt, add_special_tokens=False)["input_ids"]) if prompt else []
        if prompt and query.startswith(prompt):
            response_ids = list(tok(query[len(prompt):], add_special_tokens=False)["input_ids"])
            return prompt_ids + response_ids, len(prompt_ids)
        ids = list(tok(query, add_special_tokens=False)["input_ids"])
        return ids, min(len(prompt_ids), len(ids))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """One display string per token, joining to the decoded text (for the monitor page)."""
        return token_strings(self._need_tokenizer(), ids)

    # -- internals ------------------------------------------------------------------------------------------

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        return int(pad) if pad is not None else 0  # right padding under a mask: the pad id never matters

    def _need_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ValueError("reader: this entry point needs a tokenizer (Reader(model, tokenizer))")
        return self.tokenizer


# --- the HTTP service the sidecar forwards text to ----------------------------------------------------------


class _BadRequest(ValueError):
    """A request the reader service answers with 400 and the message (it names the field)."""


def _parse_request(body: bytes) -> tuple[list[str], list[str], int]:
    try:
        req = json.loads(body)
    except ValueError as exc:
        raise _BadRequest(f"body: not valid JSON ({exc.msg})") from exc
    if not isinstance(req, dict):
        raise _BadRequest("body: expected an object {texts, prompts, layer}")
    texts, prompts, layer = req.get("texts"), req.get("prompts"), req.get("layer")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _BadRequest("texts: must be a list of strings")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise _BadRequest("prompts: must be a list of strings")
    if len(prompts) != len(texts):
        raise _BadRequest(f"prompts: {len(prompts)} entries for {len(texts)} texts")
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise _BadRequest("layer: must be an integer")
    return texts, prompts, layer


def residuals_response(reader: Reader, texts: list[str], prompts: list[str], layer: int) -> dict[str, Any]:
    """The JSON body answering ``POST /v1/residuals``."""
    encoded = [reader.encode_query(t, p) for t, p in zip(texts, prompts)]
    if any(len(ids) == 0 for ids, _ in encoded):
        raise _BadRequest("texts: an entry tokenizes to no tokens")
    acts = reader.residuals([ids for ids, _ in encoded], layer) if encoded else []
    d_model = int(acts[0].shape[1]) if acts else 0
    sequences = []
    for (ids, score_from), a in zip(encoded, acts):
        raw = a.to(torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()
        sequences.append({
            "activations": base64.b64encode(raw).decode("ascii"),
            "dtype": "f32",
            "num_tokens": len(ids),
            "score_from": score_from,
            "tokens": reader.token_strings(ids),
        })
    return {"d_model": d_model, "sequences": sequences}


def make_server(reader: Reader, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) answering /healthz and /v1/residuals with ``reader``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                self._send(200, {"status": "alive", "layers": reader.num_layers})
            else:
                self._send(404, {"error": f"no route GET {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/v1/residuals":
                self._send(404, {"error": f"no route POST {self.path}"})
                return
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": f"body: larger than {MAX_BODY_BYTES} bytes"})
                self.close_connection = True
                return
            try:
                texts, prompts, layer = _parse_request(self.rfile.read(length))
                self._send(200, residuals_response(reader, texts, prompts, layer))
            except (_BadRequest, ValueError) as exc:
                self._send(400, {"error": str(exc)})
            except Exception:  # the reader keeps serving; the sidecar turns a 500 into a flagged fallback
                log.exception("reader: request failed")
                self._send(500, {"error": "reader failed; see its log"})

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(reader: Reader, host: str = "127.0.0.1", port: int = 0) -> None:
    server = make_server(reader, host, port)
    print(json.dumps({"msg": "reader ready", "host": host, "port": server.server_address[1]}), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mechreward_client.reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local folder with the base model and its tokenizer")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder, if not the model's")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port (printed on stderr)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    reader = Reader.from_pretrained(args.model, tokenizer_path=args.tokenizer, dtype=args.dtype, device=args.device, batch_size=args.batch_size)
    serve(reader, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
