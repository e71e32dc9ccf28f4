#!/usr/bin/env bash
# CI check of the image and the Kubernetes manifests (docs/deployment.md):
#   1. build the image (base from Debian packages, cached by content hash; Docker's layer cache does the rest);
#   2. run it with published loopback ports: it becomes ready, Docker's HEALTHCHECK says healthy, it runs as
#      the non-root user, and a real gRPC client (examples/score_grpc.mjs) scores a request through it;
#   3. `docker stop` drains it: exit 0, no forced stop;
#   4. the manifests validate offline against the Kubernetes schemas (deploy/kubernetes/validate.sh).
# Prints the image size and the times it measured. Needs root (installs and starts Docker when missing).
#
#   bash docker/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=mechreward:ci
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

bash docker/ensure-docker.sh
t=$(now)
bash docker/build-image.sh "$TAG" >/dev/null
echo "docker/test: image $TAG built (or taken from cache) in $(secs "$t") s"

cid=""
cleanup() { [[ -n "$cid" ]] && docker rm -f "$cid" >/dev/null 2>&1 || true; }
trap cleanup EXIT

t=$(now)
cid=$(docker run -d -p 127.0.0.1::50051 -p 127.0.0.1::8080 "$TAG")
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

out=$(node examples/score_grpc.mjs "$grpc" smollm2-arith)
grep -q '"token_rewards"' <<<"$out" || { echo "$out" >&2; echo "docker/test: Score through the container failed" >&2; exit 1; }
echo "docker/test: Score through the container OK"

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

bash deploy/kubernetes/validate.sh
