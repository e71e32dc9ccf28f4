#!/usr/bin/env bash
# CI check of the image and the Kubernetes manifests (docs/deploy.md):
#   1. build the image (base from Debian packages, cached by content hash; Docker's layer cache does the rest);
#   2. run it with published loopback ports and a bearer token: it becomes ready, Docker's HEALTHCHECK says
#      healthy, it runs as the non-root user, and the Python client (docker/smoke_client.py) scores through it
#      and is refused without the token;
#   3. `docker stop` drains it: exit 0, no forced stop;
#   4. docker/compose.yaml: three replicas on one PostgreSQL; a run scored over the round-robin target shows
#      whole in GetRun on every replica;
#   5. the manifests validate offline against the Kubernetes schemas (deploy/kubernetes/validate.sh).
# Prints the image size and the times it measured. Needs root (installs and starts Docker when missing).
#
#   bash docker/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=mechreward:ci
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

bash docker/ensure-docker.sh
bash python-shims/scripts/setup.sh >/dev/null   # the client (a no-op once python-shims/.venv exists)
PY=python-shims/.venv/bin/python
export PYTHONPATH="$PWD/python-shims"
# The container listens beyond its own loopback, so the server insists on a token (or an explicit opt-out).
MECHREWARD_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export MECHREWARD_AUTH_TOKEN
t=$(now)
bash docker/build-image.sh "$TAG" >/dev/null
echo "docker/test: image $TAG built (or taken from cache) in $(secs "$t") s"

cid=""
COMPOSE=(docker-compose -p mechreward-ci -f docker/compose.yaml)
cleanup() {
  [[ -n "$cid" ]] && docker rm -f "$cid" >/dev/null 2>&1
  "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT

t=$(now)
cid=$(docker run -d -e MECHREWARD_AUTH_TOKEN -p 127.0.0.1::50051 -p 127.0.0.1::8080 "$TAG")
http=$(docker port "$cid" 8080/tcp | head -n 1)
grpc=$(docker port "$cid" 50051/tcp | head -n 1)
for _ in $(seq 1 600); do
  curl -sf "http://$http/readyz" >/dev/null 2>&1 && break
  if [[ "$(docker inspect -f '{{.State.Running}}' "$cid")" != true ]]; then
    docker logs "$cid" >&2
    echo "docker/test: the container exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
curl -sf "http://$http/readyz" >/dev/null || { docker logs "$cid" >&2; echo "docker/test: not ready after 60 s" >&2; exit 1; }
echo "docker/test: start to ready $(secs "$t") s"

user=$(docker exec "$cid" id -u)
[[ "$user" == 10001 ]] || { echo "docker/test: the server runs as uid $user, expected the non-root 10001" >&2; exit 1; }
pid1_user=$(docker top "$cid" | awk 'NR == 2 {print $1}')
[[ "$pid1_user" == 10001 ]] || { echo "docker/test: the server process runs as uid $pid1_user" >&2; exit 1; }

"$PY" docker/smoke_client.py "$grpc"

for _ in $(seq 1 30); do
  [[ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" == healthy ]] && break
  sleep 1
done
[[ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" == healthy ]] || { echo "docker/test: HEALTHCHECK never reported healthy" >&2; exit 1; }

t=$(now)
docker stop -t 15 "$cid" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
docker logs "$cid" 2>&1 | grep -q '"forced":false' || { docker logs "$cid" >&2; echo "docker/test: no clean drain in the log" >&2; exit 1; }
[[ "$code" == 0 ]] || { echo "docker/test: exit code $code after SIGTERM, expected 0" >&2; exit 1; }
echo "docker/test: SIGTERM drained and exited 0 in $(secs "$t") s"

size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "docker/test: image size $(( size / 1000000 )) MB, user 10001 (non-root)"

# --- compose: three replicas, one PostgreSQL, on free loopback ports ---------------------------------------
read -r g1 g2 g3 h1 h2 h3 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export MECHREWARD_IMAGE=$TAG MECHREWARD_BASE_IMAGE=$(bash docker/build-base.sh)
export MECHREWARD_GRPC_PORT_1=$g1 MECHREWARD_GRPC_PORT_2=$g2 MECHREWARD_GRPC_PORT_3=$g3
export MECHREWARD_HTTP_PORT_1=$h1 MECHREWARD_HTTP_PORT_2=$h2 MECHREWARD_HTTP_PORT_3=$h3
MECHREWARD_PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
export MECHREWARD_PG_PASSWORD
t=$(now)
"${COMPOSE[@]}" build -q postgres >/dev/null
"${COMPOSE[@]}" up -d >/dev/null 2>&1
for port in "$h1" "$h2" "$h3"; do
  for _ in $(seq 1 900); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { "${COMPOSE[@]}" logs >&2; echo "docker/test: compose replica on $port not ready" >&2; exit 1; }
done
echo "docker/test: compose up (PostgreSQL + 3 replicas) ready in $(secs "$t") s"
"$PY" docker/smoke_client.py "ipv4:127.0.0.1:$g1,127.0.0.1:$g2,127.0.0.1:$g3" --steps 12 --run-id compose-ci \
  --get-run-on "127.0.0.1:$g1,127.0.0.1:$g2,127.0.0.1:$g3"
"${COMPOSE[@]}" down -v >/dev/null 2>&1

bash deploy/kubernetes/validate.sh
