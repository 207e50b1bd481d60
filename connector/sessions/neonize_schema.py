"""`python -m connector.sessions.neonize_schema PATH`: let neonize create whatsmeow's schema.

Runs in its own short process (neonize must never share a process with sqlite3
access to the same file). The dial goes to a closed local proxy, so it fails in
milliseconds without touching the network; by then the schema exists.
"""

from __future__ import annotations

import logging
import sys


def main(path: str) -> int:
    logging.disable(logging.WARNING)
    from neonize._binder import ProxySettings  # noqa: PLC0415 - neonize only in this process
    from neonize.client import NewClient  # noqa: PLC0415

    client = NewClient(path, uuid="schema-maker")
    try:
        client.connect(ProxySettings(proxy_address="http://127.0.0.1:1"))
    except Exception as exc:  # the dial is meant to fail; the schema is what we want
        if "dial" not in str(exc):
            print(f"neonize: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
