"""What the Cloud Functions do, behind the thin triggers in main.py.

`lifecycle` handles lifecycle events; `effects` holds the Firestore reads and
writes. The pure policy (coming with the control-plane issue) lives in `policy`.
"""
