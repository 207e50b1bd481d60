"""A misbehaving worker for tests: reads `start`, then acts by account id.

acct-garbage: writes junk lines; acct-quit: exits at once; anything else:
loaded + connected, then waits for stop.
"""

import json
import sys

start = json.loads(sys.stdin.readline())
account = start["account"]
if account == "acct-quit":
    sys.exit(3)
if account == "acct-garbage":
    sys.stdout.write('not json\n{"type": "connected"}\n' + "x" * 70000 + "\n")
    sys.stdout.flush()
    sys.stdin.readline()
    sys.exit(0)
for kind in ("loaded", "connected"):
    body = {"type": kind, "account": account}
    if kind == "loaded":
        body["jid"] = "15550001111:7@s.whatsapp.net"
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    if json.loads(line).get("type") == "stop":
        sys.stdout.write(json.dumps({"type": "stopped", "account": account}) + "\n")
        sys.stdout.flush()
        break
