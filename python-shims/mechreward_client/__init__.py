"""Python client for the mechreward reward sidecar, with residual capture and trainer adapters.

Core (grpcio + numpy): RewardClient, AsyncRewardClient, result types and exceptions.
With torch: capture_residual, find_decoder_layers. With trl: ``mechreward_client.trl``.
"""

from __future__ import annotations

from typing import Any

from ._client import AsyncRewardClient, RewardClient, TlsFiles
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    MechRewardError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    SharedMemoryUnavailableError,
    UnavailableError,
)
from ._types import CanaryFlag, PackInfo, RunBaseline, RunSummary, ScoredSequence, ServerInfo, ValidationSummary
from ._version import __version__

__all__ = [
    "__version__",
    "RewardClient",
    "AsyncRewardClient",
    "TlsFiles",
    "ScoredSequence",
    "CanaryFlag",
    "PackInfo",
    "ServerInfo",
    "ValidationSummary",
    "RunSummary",
    "RunBaseline",
    "MechRewardError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "PayloadTooLargeError",
    "OverloadedError",
    "InternalServerError",
    "UnavailableError",
    "PermissionDeniedError",
    "SharedMemoryUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "capture_residual",
    "find_decoder_layers",
]

_NEEDS_TORCH = {"capture_residual", "find_decoder_layers"}


def __getattr__(name: str) -> Any:
    # torch is optional: import the capture helpers only when asked for, and say which extra provides them.
    if name in _NEEDS_TORCH:
        try:
            from . import capture
        except ImportError as exc:
            raise ImportError(f"mechreward_client.{name} needs torch: pip install 'mechreward-client[torch]'") from exc
        return getattr(capture, name)
    raise AttributeError(f"module 'mechreward_client' has no attribute {name!r}")
