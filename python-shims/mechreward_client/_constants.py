"""Every default of the client in one place. Constructor arguments override these."""

# Where the sidecar listens when nothing else is said; MECHREWARD_TARGET overrides it.
DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV_VAR = "MECHREWARD_TARGET"
# Bearer token for a server started with --auth-token (the same variable name the server reads).
TOKEN_ENV_VAR = "MECHREWARD_AUTH_TOKEN"

# Deadline of one attempt, in seconds. Trainers wait on reward functions without a timeout of their own
# (TRL's async path, verl's naive manager), so a call must never be open-ended.
DEFAULT_TIMEOUT_S = 30.0
# Attempts after the first, for the statuses where a retry is safe (overload, not ready, connection).
DEFAULT_RETRIES = 3
# Backoff before retry n (1-based): min(INITIAL * 2**(n-1), MAX), with up to JITTER of it added at random.
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
BACKOFF_JITTER = 0.25
# The server answers RESOURCE_EXHAUSTED overloads immediately; HTTP says retry-after: 1. gRPC carries no
# Retry-After, so an overload waits at least this long before the next attempt.
OVERLOAD_MIN_BACKOFF_S = 1.0

# Largest response accepted. Responses are small (one float per token) but batches can be long.
MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_SEND_MESSAGE_BYTES = 256 * 1024 * 1024

# Sent with every call and echoed by the server in trailing metadata; errors carry it as request_id.
REQUEST_ID_METADATA_KEY = "x-request-id"

# Rows per forward pass when a trainer adapter captures residuals.
DEFAULT_CAPTURE_BATCH_SIZE = 8

# G3 recipe (docs: domain.md §6): per-token coefficient lambda decays linearly 0.20 -> 0.05 over 1500 steps.
G3_TOKEN_COEF_START = 0.20
G3_TOKEN_COEF_END = 0.05
G3_TOKEN_COEF_STEPS = 1500
# Added to a group's standard deviation before z-scoring per-token rewards.
TOKEN_ZSCORE_EPS = 1e-4

# Shared memory with a co-located sidecar (docs/shared-memory.md). Client id metadata: regions belong to it.
CLIENT_ID_METADATA_KEY = "x-mechreward-client-id"
# POSIX segment names start with this: the only names the server opens (/dev/shm/mechreward-...).
SHM_KEY_PREFIX = "mechreward-"
# Random bytes written at offset 0 of a segment; the server reads them back to prove it sees the same segment.
SHM_NONCE_BYTES = 16
# Sequences start at this offset and at multiples of SHM_ALIGN after it (cache-line aligned).
SHM_DATA_OFFSET = 64
SHM_ALIGN = 64
# A new segment holds at least this much (rounded up to a power of two): one allocation serves many calls.
SHM_MIN_SEGMENT_BYTES = 4 * 1024 * 1024
# With shared_memory=None (automatic), requests smaller than this go as bytes: for them the wire costs little.
SHM_AUTO_MIN_BYTES = 64 * 1024
