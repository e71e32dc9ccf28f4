#!/usr/bin/env bash
# Makes a Docker daemon answer on this machine, from Debian's packages: installs `docker.io` (the daemon and
# its runtime) and `docker-compose` if missing, then starts `dockerd` in the background if nothing answers on
# its socket (CI machines have no systemd). Idempotent: does nothing when `docker info` already works.
#
#   bash docker/ensure-docker.sh      # as root
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-docker: dockerd or docker-compose is missing and installing them needs root (apt-get install docker.io docker-compose)" >&2
    exit 1
  fi
  echo "ensure-docker: installing docker.io and docker-compose (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian bookworm: docker.io 20.10.24+dfsg1, docker-compose 1.29.2 (apt pins them to the release).
  apt-get install -y -qq docker.io docker-compose >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log=${MECHREWARD_DOCKERD_LOG:-/var/log/mechreward-dockerd.log}
  echo "ensure-docker: starting dockerd (log: $log)" >&2
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
  done
  echo "ensure-docker: dockerd did not answer within 30 s; see $log" >&2
  exit 1
fi
