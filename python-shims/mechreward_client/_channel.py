"""How a client's channel reaches one sidecar or many: targets, balancing, transparent retries, health.

Any gRPC target works (grpcio resolves it): ``host:port``, ``dns:///svc.ns.svc.cluster.local:50051`` (a
Kubernetes headless Service or a compose service: every address behind the name), ``ipv4:10.0.0.1:50051,
10.0.0.2:50051`` and ``ipv6:[::1]:50051``. The service config below, which grpcio applies to every target,
makes a set of replicas look like one sidecar to a trainer:

- ``round_robin`` (grpcio's own load balancer) spreads calls over every address the target resolves to;
- ``healthCheckConfig`` turns on grpcio's client-side health checking: each connection watches the server's
  ``grpc.health.v1`` status for ``mechreward.v1.RewardService``, and the balancer skips a replica while it
  reports NOT_SERVING (loading packs after a restart, or draining after SIGTERM);
- a ``retryPolicy`` retries UNAVAILABLE on another replica at once, within the call's deadline: a replica
  that goes away between the pick and the reply costs a retry, not a failed step. Scoring is idempotent (the
  same activations give the same rewards); the only side effect is the run monitor's counts, which may count
  a batch twice when a replica persisted it and then died before replying (docs/deploy.md).

The client's own retries (``_retry.RetryPolicy``, with backoff) still wrap each call, for gaps longer than a
transparent retry covers, such as every replica restarting at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from . import _constants as C

SERVICE = "mechreward.v1.RewardService"
# gRPC caps maxAttempts at 5 (the first attempt included), whatever a service config asks for.
TRANSPARENT_ATTEMPTS = 5

# Every RPC of the service is safe to repeat: Score is a pure function of its request (up to the run counts
# above), the others only read.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": SERVICE},
    "methodConfig": [
        {
            "name": [{"service": SERVICE}],
            "retryPolicy": {
                "maxAttempts": TRANSPARENT_ATTEMPTS,
                "initialBackoff": f"{C.INITIAL_BACKOFF_S}s",
                "maxBackoff": f"{C.MAX_BACKOFF_S}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

# URI schemes grpcio resolves; a target without one is a "host:port" for the DNS resolver.
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def check_target(target: str) -> str:
    """``target`` if grpcio can resolve it; a ValueError naming the fix otherwise.

    A bare comma-separated list (``10.0.0.1:50051,10.0.0.2:50051``) is the usual mistake: grpcio would read
    it as one host name. Lists need the ``ipv4:``/``ipv6:`` scheme, names a ``dns:///`` target.
    """
    if not target or any(c.isspace() for c in target):
        raise ValueError(f"target: expected a gRPC target such as 127.0.0.1:50051 or dns:///host:port, got {target!r}")
    if "," in target and not target.startswith(("ipv4:", "ipv6:")):
        raise ValueError(
            f"target: {target!r} lists several addresses without a scheme; write ipv4:{target} (IP addresses) "
            "or one dns:///name:port whose name resolves to every replica"
        )
    return target


def channel_options(target: str, base: Sequence[tuple[str, object]] = ()) -> tuple[tuple[str, object], ...]:
    """``base`` (message sizes, reconnect backoff) plus the options that balance, health-check and retry."""
    check_target(target)
    return (
        *base,
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        # Our service config, never one a DNS TXT record publishes.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        # gRPC retries only what it still holds: a request above this size (default 256 KiB) is committed to
        # its first replica. Score requests are activations, often megabytes, so hold up to a whole message.
        ("grpc.per_rpc_retry_buffer_size", C.MAX_SEND_MESSAGE_BYTES),
        ("grpc.retry_buffer_size", C.MAX_SEND_MESSAGE_BYTES),
    )
