"""Plain result types returned by the client (no protobuf objects leak out of the package)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CanaryFlag:
    """A canary feature fired on this sequence's response (a possible reward hack)."""

    name: str
    reason: str
    value: float


@dataclass(frozen=True)
class ScoredSequence:
    """One sequence's score, in request order."""

    #: The pack's pooled score over response tokens (what a trainer uses as the scalar reward).
    reward: float
    #: float32, one per token of the sequence; prompt tokens (before score_from) are 0.
    token_rewards: np.ndarray = field(repr=False)
    flags: tuple[CanaryFlag, ...] = ()
    #: Dual verifier (packs with a `verifier`): share of the response's rewarded tokens whose sign the probe
    #: contradicts; None when the pack has no verifier.
    verifier_disagreement: float | None = None
    #: Factor the verifier's batch_downweight mode applied to this response's rewards (1.0 when none).
    verifier_factor: float = 1.0


@dataclass(frozen=True)
class ValidationSummary:
    present: bool
    verdict: str
    spearman_rho: float
    n: int
    method: str


@dataclass(frozen=True)
class PackInfo:
    name: str
    model: str
    #: Decoder layer whose residual output (hidden_states[layer + 1]) the SAE reads; None when not stated.
    layer: int | None
    d_model: int
    d_sae: int
    k: int
    architecture: str
    encode_mode: str
    feature_count: int
    pooling: str
    canaries: tuple[str, ...]
    schema: str
    sae_format: str
    synthetic: bool
    description: str
    validation: ValidationSummary
    #: sae | direction | probe
    kind: str = "sae"
    #: token_gate | batch_downweight; "" when the pack has no dual verifier.
    verifier_mode: str = ""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    onnxruntime_version: str
    max_message_bytes: int
    max_tokens_per_request: int
    max_inflight: int
    max_batch_tokens: int
    workers: int
    intra_op_threads: int
    packs: tuple[str, ...]


@dataclass(frozen=True)
class RunBaseline:
    """The pack's calibrated flag rate of healthy rollouts: ``flagged`` of ``n``, with its Wilson 95 % interval."""

    rate: float
    ci: tuple[float, float]
    flagged: int
    n: int


@dataclass(frozen=True)
class RunSummary:
    """The server's canary monitor for one run_id: how many sequences were flagged, against the baseline."""

    run_id: str
    pack: str
    sequences: int
    #: Sequences with at least one flag.
    flagged: int
    flag_rate: float
    #: Wilson 95 % interval of flag_rate.
    ci: tuple[float, float]
    #: None when the pack has no calibrated baseline.
    baseline: RunBaseline | None
    #: The run's interval lies above the baseline's (ci[0] > baseline.ci[1]).
    alarm: bool
    flags_by_name: dict[str, int]
    first_seen_ms: int
    last_seen_ms: int
