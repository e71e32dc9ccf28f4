"""The client's exception tree and the one function that maps a gRPC failure onto it.

    MechRewardError
    └── APIError                  code (MR_ERR_*), status (grpc.StatusCode), message, request_id
        ├── APIStatusError        the server answered with an error status
        │   ├── BadRequestError       INVALID_ARGUMENT / 400
        │   ├── NotFoundError         NOT_FOUND / 404
        │   ├── PermissionDeniedError PERMISSION_DENIED / 403 (another client's shared-memory region)
        │   ├── PayloadTooLargeError  RESOURCE_EXHAUSTED for size / 413
        │   ├── OverloadedError       RESOURCE_EXHAUSTED for load / 429   (retried)
        │   ├── InternalServerError   INTERNAL, FAILED_PRECONDITION / 500
        │   │   └── SharedMemoryUnavailableError  FAILED_PRECONDITION from RegisterSharedMemory (falls back)
        │   └── UnavailableError      UNAVAILABLE from the server / 503   (retried)
        └── APIConnectionError    no answer: nothing listening, connection lost   (retried)
            └── APITimeoutError   the deadline passed                              (not retried)

The server puts its catalogue code at the start of the status details (``MR_ERR_X: message``,
docs/errors.md); ``CODE_TO_EXCEPTION`` is the Python side of that catalogue.
"""

from __future__ import annotations

import re

import grpc


class MechRewardError(Exception):
    """Root of every error this package raises on purpose."""


class APIError(MechRewardError):
    #: Whether the same call may simply be sent again (scoring is a pure function of the request).
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: grpc.StatusCode | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        status = self.status.name if self.status is not None else "NO_STATUS"
        head = f"{status} {self.code}" if self.code else status
        tail = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{head}: {self.message}{tail}"

    def __reduce__(self):  # keyword-only arguments need help to survive pickling (multiprocessing, Ray)
        return (_rebuild, (type(self), self.message, self.code, self.status, self.request_id))


def _rebuild(cls, message, code, status, request_id):
    return cls(message, code=code, status=status, request_id=request_id)


class APIStatusError(APIError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError):
    """INVALID_ARGUMENT: the request is wrong (dtype, shape, score_from, non-finite input). Fix the caller."""


class AuthenticationError(APIStatusError):
    """UNAUTHENTICATED: the server wants a bearer token (its --auth-token) and this client sent none or another."""


class NotFoundError(APIStatusError):
    """NOT_FOUND: the pack is not loaded on this server."""


class PermissionDeniedError(APIStatusError):
    """PERMISSION_DENIED: e.g. a shared-memory region registered by another client."""


class PayloadTooLargeError(APIStatusError):
    """RESOURCE_EXHAUSTED because of size: too many tokens or too many bytes. Send smaller batches."""


class OverloadedError(APIStatusError):
    """RESOURCE_EXHAUSTED because too many requests are in flight. Safe to retry after a pause."""

    retryable = True


class InternalServerError(APIStatusError):
    """INTERNAL (or another server-side failure): not the caller's fault, not fixed by retrying."""


class SharedMemoryUnavailableError(InternalServerError):
    """FAILED_PRECONDITION from RegisterSharedMemory: the server cannot use this segment (not co-located,
    --shm off). The client falls back to bytes on the wire by itself."""


class UnavailableError(APIStatusError):
    """UNAVAILABLE from the server: still warming up, restarting a worker or shutting down."""

    retryable = True


class APIConnectionError(APIError):
    """No answer from a server: nothing listening, connection refused or lost."""

    retryable = True


class APITimeoutError(APIConnectionError):
    """The call's deadline passed. Not retried: a stuck server would only multiply the wait."""

    retryable = False


# The catalogue in docs/errors.md (src/errors.ts), code -> exception class.
CODE_TO_EXCEPTION: dict[str, type[APIError]] = {
    "MR_ERR_INVALID_ARGUMENT": BadRequestError,
    "MR_ERR_INVALID_TENSOR": BadRequestError,
    "MR_ERR_NONFINITE_INPUT": BadRequestError,
    "MR_ERR_EMPTY_INPUT": BadRequestError,
    "MR_ERR_MALFORMED_BODY": BadRequestError,
    "MR_ERR_UNAUTHENTICATED": AuthenticationError,
    "MR_ERR_PACK_NOT_FOUND": NotFoundError,
    "MR_ERR_RUN_NOT_FOUND": NotFoundError,  # GetRun for a run_id no Score call has named
    "MR_ERR_REQUEST_TOO_LARGE": PayloadTooLargeError,
    "MR_ERR_OVERLOADED": OverloadedError,
    "MR_ERR_NOT_READY": UnavailableError,
    "MR_ERR_WORKER_LOST": UnavailableError,  # the engine worker died mid-request; a fresh one takes the retry
    "MR_ERR_STORE_UNAVAILABLE": UnavailableError,  # the runs database refused the write; rolled back, a retry counts once
    "MR_ERR_CANCELLED": APIStatusError,
    "MR_ERR_DEADLINE": APITimeoutError,
    "MR_ERR_NONFINITE_OUTPUT": InternalServerError,
    "MR_ERR_BACKEND": InternalServerError,
    "MR_ERR_INTERNAL": InternalServerError,
    "MR_ERR_READER_NOT_CONFIGURED": InternalServerError,  # HTTP OpenRLHF route only: no --reader-url
    "MR_ERR_READER_FAILED": UnavailableError,  # HTTP OpenRLHF route only; answered there with a flagged fallback
    "MR_ERR_SHM_NOT_FOUND": NotFoundError,  # a shared-memory region the server no longer holds (lease, restart)
    "MR_ERR_SHM_FORBIDDEN": PermissionDeniedError,  # another client's shared-memory region
    "MR_ERR_SHM_UNAVAILABLE": SharedMemoryUnavailableError,  # not co-located or --shm off: send bytes instead
    "MR_ERR_CONFIG_INVALID": InternalServerError,
    "MR_ERR_PACK_INVALID": InternalServerError,
}

# Statuses that arrive without a catalogue code: produced by the gRPC runtime on either side, not by
# mechreward's handlers (connection failures, client deadlines, grpc-js refusing an oversized message).
_STATUS_WITHOUT_CODE: dict[grpc.StatusCode, type[APIError]] = {
    grpc.StatusCode.UNAVAILABLE: APIConnectionError,
    grpc.StatusCode.DEADLINE_EXCEEDED: APITimeoutError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: PayloadTooLargeError,
    grpc.StatusCode.INVALID_ARGUMENT: BadRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalServerError,
    grpc.StatusCode.UNKNOWN: InternalServerError,
    grpc.StatusCode.FAILED_PRECONDITION: InternalServerError,
    grpc.StatusCode.DATA_LOSS: InternalServerError,
}

_CODED_DETAILS = re.compile(r"^(MR_ERR_[A-Z0-9_]+):\s*(.*)$", re.DOTALL)


def error_from_status(status: grpc.StatusCode | None, details: str | None, request_id: str | None = None) -> APIError:
    """Build the exception for a failed call from its status and details."""
    details = details or ""
    match = _CODED_DETAILS.match(details)
    if match:
        code, message = match.group(1), match.group(2)
        cls = CODE_TO_EXCEPTION.get(code, APIStatusError)
    else:
        code, message = None, details or "no details"
        cls = _STATUS_WITHOUT_CODE.get(status, APIStatusError) if status is not None else APIConnectionError
    return cls(message, code=code, status=status, request_id=request_id)
