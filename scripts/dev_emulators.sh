#!/usr/bin/env bash
# A long-running Firestore + Pub/Sub emulator for development, on ports apart from
# the ones `make test` uses, so both can run at once. Prints the variables to export.
#   scripts/dev_emulators.sh start | stop
# Tests against it: FIRESTORE_EMULATOR_HOST=127.0.0.1:9180 PUBSUB_EMULATOR_HOST=127.0.0.1:9185 \
#   GOOGLE_CLOUD_PROJECT=demo-<yours> .venv/bin/python -m pytest tests/...
# Use your own demo- project id: each test resets the data of its project only.
# No functions emulator here: tests/integration/test_policy_e2e.py waits for the deployed
# policy and fails against these; it runs under `make test`, which starts all three.
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=.cache/dev-emulators.pid
case "${1:-start}" in
  start)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "already running (pid $(cat "$pidfile"))"
    else
      mkdir -p .cache
      .venv/bin/python - <<'PY'
import json
cfg = json.load(open("firebase.json"))
cfg["emulators"] = {
    "singleProjectMode": False,
    "firestore": {"host": "127.0.0.1", "port": 9180},
    "pubsub": {"host": "127.0.0.1", "port": 9185},
    "hub": {"host": "127.0.0.1", "port": 9400},
    "logging": {"host": "127.0.0.1", "port": 9500},
    "ui": {"enabled": False},
}
json.dump(cfg, open("firebase.dev.json", "w"), indent=2)
PY
      setsid scripts/firebase --config firebase.dev.json emulators:start --project demo-wa-keeper \
        --only firestore,pubsub > .cache/dev-emulators.log 2>&1 &
      echo $! > "$pidfile"
      for _ in $(seq 60); do
        grep -q "All emulators ready" .cache/dev-emulators.log && break
        sleep 1
      done
      grep -q "All emulators ready" .cache/dev-emulators.log || { tail -20 .cache/dev-emulators.log; exit 1; }
    fi
    echo "export FIRESTORE_EMULATOR_HOST=127.0.0.1:9180 PUBSUB_EMULATOR_HOST=127.0.0.1:9185"
    ;;
  stop)
    [ -f "$pidfile" ] && kill -- -"$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
    ;;
esac
