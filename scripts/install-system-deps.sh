#!/usr/bin/env bash
# System packages the tests need beyond Node and Python: `openssl` (the TLS tests make their certificates
# with it) and Debian's `chromium`, which the monitor page test
# (test/integration/monitor-page.test.ts) drives through playwright-core. playwright-core never downloads a
# browser of its own, and the test does not skip without one, so CI runs this before `npm test`. Debian's
# `postgresql` (15 on bookworm): the runs-store tests start a private server of their own with
# scripts/pg-test-server.sh (initdb + pg_ctl under a temp dir); the system cluster is never used.
# Idempotent: does nothing when /usr/bin/chromium, openssl and PostgreSQL's initdb are already there.
#
#   bash scripts/install-system-deps.sh        # as root, or with sudo available
set -euo pipefail

CHROMIUM=/usr/bin/chromium

have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if [[ -x "$CHROMIUM" ]] && command -v openssl >/dev/null 2>&1 && have_postgres; then
  echo "install-system-deps: $CHROMIUM, openssl and PostgreSQL present"
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-system-deps: $CHROMIUM is missing and installing it needs root (apt-get install chromium)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; install Chromium so that $CHROMIUM exists" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
# A font named explicitly: without one the page screenshot would have no readable text.
"${SUDO[@]}" apt-get install -y chromium fonts-dejavu-core openssl postgresql
"$CHROMIUM" --version
