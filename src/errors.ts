// The one error catalogue. Every error a client can see has a stable MR_ERR_* code, and this file is the only
// place that maps it to a gRPC status and an HTTP code. Handlers throw MechRewardError; the transports call
// toGrpcStatus() / toHttpError(). Anything else thrown becomes MR_ERR_INTERNAL with a generic message: raw
// Error messages (paths, stack details) never reach a client.
import { status as GrpcStatus } from '@grpc/grpc-js';

export interface CatalogueEntry {
  readonly grpc: GrpcStatus;
  readonly http: number;
  /** Coarse class for clients and for the `reason` label of mechreward_request_failures_total. */
  readonly errorType: 'validation' | 'not_found' | 'overloaded' | 'not_ready' | 'cancelled' | 'timeout' | 'internal' | 'config' | 'pack' | 'unauthenticated';
  /** Whether the same request may succeed if retried unchanged. */
  readonly retryable: boolean;
}

export const ERROR_CATALOGUE = {
  MR_ERR_INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, errorType: 'validation', retryable: false },
  MR_ERR_INVALID_TENSOR: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, errorType: 'validation', retryable: false },
  MR_ERR_NONFINITE_INPUT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, errorType: 'validation', retryable: false },
  MR_ERR_EMPTY_INPUT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, errorType: 'validation', retryable: false },
  MR_ERR_MALFORMED_BODY: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, errorType: 'validation', retryable: false },
  MR_ERR_UNAUTHENTICATED: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401, errorType: 'unauthenticated', retryable: false },
  MR_ERR_PACK_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, errorType: 'not_found', retryable: false },
  MR_ERR_RUN_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, errorType: 'not_found', retryable: false },
  MR_ERR_REQUEST_TOO_LARGE: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 413, errorType: 'validation', retryable: false },
  MR_ERR_OVERLOADED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429, errorType: 'overloaded', retryable: true },
  MR_ERR_NOT_READY: { grpc: GrpcStatus.UNAVAILABLE, http: 503, errorType: 'not_ready', retryable: true },
  MR_ERR_WORKER_LOST: { grpc: GrpcStatus.UNAVAILABLE, http: 503, errorType: 'not_ready', retryable: true },
  MR_ERR_CANCELLED: { grpc: GrpcStatus.CANCELLED, http: 499, errorType: 'cancelled', retryable: false },
  MR_ERR_DEADLINE: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504, errorType: 'timeout', retryable: true },
  MR_ERR_NONFINITE_OUTPUT: { grpc: GrpcStatus.INTERNAL, http: 500, errorType: 'internal', retryable: false },
  // The runs database refused a write (rolled back: nothing of the request was counted, so a retry is safe).
  MR_ERR_STORE_UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503, errorType: 'not_ready', retryable: true },
  MR_ERR_BACKEND: { grpc: GrpcStatus.INTERNAL, http: 500, errorType: 'internal', retryable: false },
  MR_ERR_INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500, errorType: 'internal', retryable: false },
  // The reader (text -> activations) behind the OpenRLHF route: not configured, or it failed.
  MR_ERR_READER_NOT_CONFIGURED: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 501, errorType: 'config', retryable: false },
  MR_ERR_READER_FAILED: { grpc: GrpcStatus.UNAVAILABLE, http: 502, errorType: 'not_ready', retryable: true },
  // Start-up errors: never sent over the wire, but catalogued so the CLI reports them the same way.
  MR_ERR_CONFIG_INVALID: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 500, errorType: 'config', retryable: false },
  MR_ERR_PACK_INVALID: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 500, errorType: 'pack', retryable: false },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class MechRewardError extends Error {
  readonly code: ErrorCode;
  /** Kept for logs only; never sent to a client. */
  override readonly cause: unknown;

  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(message);
    this.name = 'MechRewardError';
    this.code = code;
    this.cause = cause;
  }

  get entry(): CatalogueEntry {
    return ERROR_CATALOGUE[this.code];
  }
}

/** Normalise anything thrown into a catalogued error; unknown errors keep their cause but get a generic message. */
export function asMechRewardError(err: unknown): MechRewardError {
  if (err instanceof MechRewardError) return err;
  return new MechRewardError('MR_ERR_INTERNAL', 'internal error', err);
}

export interface GrpcErrorStatus {
  code: GrpcStatus;
  details: string;
}

export function toGrpcStatus(err: unknown): GrpcErrorStatus {
  const e = asMechRewardError(err);
  return { code: e.entry.grpc, details: `${e.code}: ${e.message}` };
}

export interface HttpErrorBody {
  error: string;
  error_type: string;
  code: ErrorCode;
}

export function toHttpError(err: unknown): { statusCode: number; body: HttpErrorBody } {
  const e = asMechRewardError(err);
  return { statusCode: e.entry.http, body: { error: e.message, error_type: e.entry.errorType, code: e.code } };
}
