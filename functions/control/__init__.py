"""What the Cloud Functions do, behind the thin triggers in main.py.

`lifecycle` parses events and `effects` applies the policy to them in one
transaction (`accounts` reads and writes an account for it); `requests` turns
app requests into commands; `sweep` is the scheduled housekeeping; `params`
reads the thresholds. The decisions themselves live in the pure `policy` package.
"""
