"""What the verl and OpenRLHF adapters share: their settings, one reader per process, and scoring token ids.

Both frameworks build our objects themselves (verl from a registry name, OpenRLHF by exec'ing a file), so the
settings come from a mapping the framework hands over (verl's config, reward kwargs) and then from
``MECHREWARD_*`` environment variables, which reach every worker process.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from . import _constants as C
from ._client import AsyncRewardClient, RewardClient
from ._exceptions import APIConnectionError, InternalServerError, OverloadedError, UnavailableError
from ._types import ScoredSequence

log = logging.getLogger("mechreward_client")

# Failures of the sidecar itself (down, stuck past the deadline, overloaded, broken). The on_error policy
# decides what they become. A BadRequest / NotFound is a misconfiguration and is always raised.
SIDECAR_FAILURES = (APIConnectionError, UnavailableError, OverloadedError, InternalServerError)

OnError = Literal["raise", "flag"]

# Setting -> environment variable read when the framework's mapping does not set it.
ENV_VARS = {
    "pack": "MECHREWARD_PACK",
    "reader_model": "MECHREWARD_READER_MODEL",
    "reader_tokenizer": "MECHREWARD_READER_TOKENIZER",
    "reader_dtype": "MECHREWARD_READER_DTYPE",
    "reader_device": "MECHREWARD_READER_DEVICE",
    "layer": "MECHREWARD_LAYER",
    "timeout": "MECHREWARD_TIMEOUT",
    "retries": "MECHREWARD_RETRIES",
    "on_error": "MECHREWARD_ON_ERROR",
    "fallback_reward": "MECHREWARD_FALLBACK_REWARD",
    "run_id": "MECHREWARD_RUN_ID",
}


@dataclass(frozen=True)
class AdapterSettings:
    """Everything an adapter needs; ``target`` falls back to MECHREWARD_TARGET inside the client."""

    pack: str
    reader_model: str
    target: str | None = None
    layer: int | None = None
    reader_tokenizer: str | None = None  # default: the reader_model folder
    reader_dtype: str = "float32"
    reader_device: str = "cpu"  # where the reader runs: "cuda", "cuda:1", ... on a GPU host
    timeout: float = C.DEFAULT_TIMEOUT_S
    retries: int = C.DEFAULT_RETRIES
    on_error: OnError = "raise"
    fallback_reward: float = 0.0
    run_id: str | None = None

    @classmethod
    def resolve(cls, given: Mapping[str, Any] | None, *, env: Mapping[str, str] | None = None, **defaults: Any) -> AdapterSettings:
        """Settings from ``given`` (wins), then the environment, then ``defaults``; checked, naming the field."""
        env = os.environ if env is None else env
        given = dict(given or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"mechreward settings: unknown key(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name in known:
            if given.get(name) is not None:
                values[name] = given[name]
            elif name in ENV_VARS and env.get(ENV_VARS[name]):
                values[name] = env[ENV_VARS[name]]
            elif defaults.get(name) is not None:
                values[name] = defaults[name]
        for name in ("pack", "reader_model"):
            if not values.get(name):
                raise ValueError(f"mechreward settings: {name} is required (or set {ENV_VARS[name]})")
        try:
            for name, kind in (("layer", int), ("timeout", float), ("retries", int), ("fallback_reward", float)):
                if name in values:
                    values[name] = kind(values[name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"mechreward settings: {name}: {values[name]!r} is not {'an integer' if kind is int else 'a number'}") from exc
        if values.get("on_error", "raise") not in ("raise", "flag"):
            raise ValueError(f"mechreward settings: on_error: expected 'raise' or 'flag', got {values['on_error']!r}")
        if values.get("timeout", 1.0) <= 0:
            raise ValueError("mechreward settings: timeout must be > 0 seconds (a reward call must never hang)")
        if "reader_device" in values:
            values["reader_device"] = checked_device(str(values["reader_device"]))
        return cls(**values)


@functools.lru_cache(maxsize=16)
def checked_device(device: str) -> str:
    """``device`` as torch spells it, or a ValueError naming the setting. Checked when the settings are read, not
    when the reader first loads: a failure there would become a flagged fallback reward on every call."""
    try:
        import torch
    except ImportError:  # the reader cannot load without torch either; that error names the extra to install
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"mechreward settings: reader_device ({ENV_VARS['reader_device']}): {device!r} is not a torch "
                         "device (cpu, cuda, cuda:1, ...)") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"mechreward settings: reader_device ({ENV_VARS['reader_device']}): {device!r}, but this torch "
                         "sees no CUDA device (torch.cuda.is_available() is False)")
    return str(parsed)


_readers: dict[tuple[str, str, str, str], Any] = {}
_readers_lock = threading.Lock()


def shared_reader(path: str, dtype: str = "float32", tokenizer_path: str | None = None, device: str = "cpu") -> Any:
    """One frozen reader per (model folder, tokenizer folder, dtype, device) per process, loaded on first use."""
    from .reader import Reader  # torch and transformers only when an adapter actually runs

    key = (os.path.abspath(path), os.path.abspath(tokenizer_path or path), dtype, device)
    with _readers_lock:
        if key not in _readers:
            log.info("mechreward: loading reader model from %s (%s on %s)", path, dtype, device)
            _readers[key] = Reader.from_pretrained(path, tokenizer_path=tokenizer_path, dtype=dtype, device=device)
        return _readers[key]


class PackScorer:
    """Captures residuals with the reader and scores them through the sidecar, sync or async.

    Picklable: the clients open their channels lazily in each process, and the reader is looked up again.
    """

    def __init__(self, settings: AdapterSettings, reader: Any = None) -> None:
        self.settings = settings
        self._reader = reader
        self.client = RewardClient(settings.target, timeout=settings.timeout, retries=settings.retries)
        self.async_client = AsyncRewardClient(settings.target, timeout=settings.timeout, retries=settings.retries)
        self._layer = settings.layer

    @property
    def reader(self) -> Any:
        if self._reader is None:
            s = self.settings
            self._reader = shared_reader(s.reader_model, s.reader_dtype, s.reader_tokenizer, s.reader_device)
        return self._reader

    def layer(self) -> int:
        if self._layer is None:
            self._layer = self._pack_layer(self.client.list_packs())
        return self._layer

    async def alayer(self) -> int:
        if self._layer is None:
            self._layer = self._pack_layer(await self.async_client.list_packs())
        return self._layer

    def score_ids(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], texts: Sequence[str] | None = None,
                  expected_answers: Sequence[str | None] | None = None, step: int | None = None) -> list[ScoredSequence]:
        """Score token id sequences; sidecar failures raise (the caller applies the on_error policy).

        ``texts`` and ``expected_answers`` (one per sequence) feed the sidecar's canary text rule; ``step`` (the
        trainer's step) goes with ``run_id`` to the sidecar's monitor, which plots the run by it.
        """
        layer = self.layer()
        acts = self.reader.residuals(sequences, layer)
        return self.client.score(self.settings.pack, acts, list(score_from), self.settings.run_id, texts=texts,
                                 expected_answers=expected_answers,
                                 tokens=[self.reader.token_strings(s) for s in sequences] if self.reader.tokenizer else None,
                                 step=self._step(step))

    async def ascore_ids(self, sequences: Sequence[Sequence[int]], score_from: Sequence[int], texts: Sequence[str] | None = None,
                         step: int | None = None) -> list[ScoredSequence]:
        import asyncio

        layer = await self.alayer()
        # The forward pass blocks: keep it off the framework's event loop.
        acts = await asyncio.to_thread(self.reader.residuals, sequences, layer)
        tokens = [self.reader.token_strings(s) for s in sequences] if self.reader.tokenizer else None
        return await self.async_client.score(self.settings.pack, acts, list(score_from), self.settings.run_id, texts=texts, tokens=tokens,
                                             step=self._step(step))

    def _step(self, step: int | None) -> int | None:
        # A step means something only within a run (the monitor keys its history by run_id), as in the TRL shim.
        return step if self.settings.run_id else None

    def _pack_layer(self, packs: list[Any]) -> int:
        for p in packs:
            if p.name == self.settings.pack:
                if p.layer is None:
                    raise ValueError(f"pack {p.name!r} declares no layer; set the adapter's layer setting")
                return int(p.layer)
        raise ValueError(f"pack {self.settings.pack!r} is not served by the sidecar (it has {[p.name for p in packs]})")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None  # a model does not travel; each process loads its own
        return state
