#!/usr/bin/env bash
# Builds the mechreward image on a machine with Debian's Docker and no container registry: the daemon
# (ensure-docker.sh), the base image from Debian packages (build-base.sh, cached by content hash), then
# docker/Dockerfile on top. Extra arguments go to `docker build` (e.g. --build-arg PACKS=examples/packs).
#
#   bash docker/build-image.sh [TAG] [docker build args...]     # TAG defaults to mechreward:local
#
# With a registry, build straight from the Dockerfile instead:
#   docker build -f docker/Dockerfile --build-arg BASE_IMAGE=node:20-bookworm-slim -t mechreward .
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-mechreward:local}
shift || true

bash docker/ensure-docker.sh
base=$(bash docker/build-base.sh)

# The host's locally added CAs, for a build stage behind a TLS-inspecting proxy (see docker/build-ca/README.md).
cat /usr/local/share/ca-certificates/*.crt > docker/build-ca/extra.pem 2>/dev/null || : > docker/build-ca/extra.pem

start=$(date +%s)
# A build whose sources changed leaves the previous image of TAG and the previous build stage untagged, about
# 1.8 GB a build, which pile up on a long-lived daemon (a CI machine). The build stage is tagged so the newest
# stays as the next build's layer cache; then only this project's untagged images (the Dockerfile's
# io.mechreward.image label) are removed. The second `docker build` takes the build stage from the first's cache.
DOCKER_BUILDKIT=0 docker build --quiet -f docker/Dockerfile --build-arg BASE_IMAGE="$base" --target build -t mechreward-build:cache "$@" . >/dev/null
DOCKER_BUILDKIT=0 docker build --quiet -f docker/Dockerfile --build-arg BASE_IMAGE="$base" -t "$TAG" "$@" . >/dev/null
docker image prune -f --filter label=io.mechreward.image >/dev/null
echo "build-image: $TAG on $base in $(( $(date +%s) - start )) s" >&2
echo "$TAG"
