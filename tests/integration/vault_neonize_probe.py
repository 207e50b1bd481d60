"""`python tests/integration/vault_neonize_probe.py SESSION_DB`: load a session with real neonize.

Run as a subprocess by the vault's round-trip test (pytest never imports neonize).
Connects through a closed local proxy, so the dial fails at once and offline;
then asks neonize who it is logged in as. Prints one JSON line:
`{"dial_error": "...", "user": "15550001111"}`; exit 1 when loading fails.
"""

from __future__ import annotations

import json
import logging
import sys


def main(path: str) -> int:
    logging.disable(logging.WARNING)
    from neonize._binder import ProxySettings  # noqa: PLC0415 - neonize only in this process
    from neonize.client import NewClient  # noqa: PLC0415

    client = NewClient(path, uuid="vault-probe")
    dial_error = ""
    try:
        client.connect(ProxySettings(proxy_address="http://127.0.0.1:1"))
    except Exception as exc:  # the dial is meant to fail; loading the session is what we test
        dial_error = str(exc)
    if "dial" not in dial_error:
        print(json.dumps({"error": dial_error or "connect did not fail at dial"}))
        return 1
    user = str(client.get_me().JID.User)
    print(json.dumps({"dial_error": dial_error[:200], "user": user}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
