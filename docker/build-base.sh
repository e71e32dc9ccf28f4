#!/usr/bin/env bash
# Builds the runtime base image of docker/Dockerfile from Debian packages alone, for machines that reach
# Debian's mirror but no container registry: mmdebstrap lays a minimal Debian trixie (Node.js 20 from
# trixie's own `nodejs` package; bookworm ships 18, and mechreward needs >= 20) into a tar stream that
# `docker import` turns into an image. With a registry, skip this and pass an official Node image instead:
#   docker build --build-arg BASE_IMAGE=node:20-bookworm-slim -f docker/Dockerfile .
#
# The tag is a content hash of this script's commands, so an unchanged script reuses the image already in the daemon
# (a build takes about a minute; CI pays it once per machine):
#   bash docker/build-base.sh            # prints the tag, e.g. mechreward-base:3f2a9c1e0b7d (also :latest)
#   bash docker/build-base.sh --force    # rebuild even when the tag exists
#
# Needs root (or sudo) for apt-get, mmdebstrap and a running Docker daemon (docker/ensure-docker.sh).
set -euo pipefail
cd "$(dirname "$0")"

SUITE=trixie
MIRROR=${MECHREWARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# nodejs: the runtime; tini: PID 1 that forwards SIGTERM and reaps; ca-certificates: TLS to a
# PostgreSQL runs store or a reader with a public CA. Nothing else: the image has no shell tools it needs.
PACKAGES=nodejs,tini,ca-certificates
NODE_MAJOR_MIN=20

# Comments and blank lines are left out of the hash: editing the documentation above rebuilds nothing.
HASH=$( { grep -v -E '^[[:space:]]*(#|$)' "$(basename "$0")"; echo "$MIRROR"; } | sha256sum | cut -c1-12)
TAG="mechreward-base:$HASH"

if [[ "${1:-}" != "--force" ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" mechreward-base:latest   # the Dockerfile's default BASE_IMAGE
  echo "$TAG"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "build-base: installing mmdebstrap (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
fi

start=$(date +%s)
# minbase: essential packages and apt only. The hook writes the versions of what we installed into
# /etc/mechreward-base, and the customize step drops apt lists, caches and docs to keep the image small.
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --customize-hook='chroot "$1" dpkg-query -W nodejs tini libnode115 > "$1/etc/mechreward-base"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*' \
  "$SUITE" - "$MIRROR" \
  | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["node"]' \
      --message "mmdebstrap $SUITE minbase + $PACKAGES" \
      - "$TAG" >/dev/null

node_version=$(docker run --rm "$TAG" node --version)
major=${node_version#v}; major=${major%%.*}
if (( major < NODE_MAJOR_MIN )); then
  echo "build-base: $SUITE ships Node $node_version; mechreward needs >= $NODE_MAJOR_MIN" >&2
  exit 1
fi
docker tag "$TAG" mechreward-base:latest
echo "build-base: $TAG (Node $node_version) built in $(( $(date +%s) - start )) s" >&2
echo "$TAG"
