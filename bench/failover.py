"""Failover of many accounts between two `wa-keeper run` processes (issue #6).

Two connectors (default 15 s lease TTL) and sim-server; N simulated accounts
whose rendezvous ranking prefers `bench-a`: `bench-a` pairs them (in batches,
alone), then `bench-b` starts and stays a standby. Then:

1. kill -9 of `bench-a`: seconds from the kill until each account is logged in
   again from `bench-b` (sim-server's connection records), p50 / p90 / max,
   and how many took longer than TTL + 5 s;
2. graceful handoff: `bench-a` starts again (the preferred host), `bench-b`
   gets SIGTERM: seconds until `bench-b` has exited (final backups, status
   `unattended`, leases released) and until each account is logged in from
   `bench-a`;
3. the double-connection check over both phases: intervals in which one
   device was driven from two places, against the renew-deadline bound.

Needs the emulators (scripts/dev_emulators.sh start), e.g.:
  FIRESTORE_EMULATOR_HOST=127.0.0.1:9180 PUBSUB_EMULATOR_HOST=127.0.0.1:9185 \
  GOOGLE_CLOUD_PROJECT=demo-bench .venv/bin/python bench/failover.py --accounts 200
Figures are printed, never asserted.

Measured on the development machine (2 vCPU shared with other runs, load average
in brackets; one emulator for everyone), TTL 15 s, backups every 10 s:
  accounts   kill -9: logged in again p50 / max    SIGTERM: old host exited / logged in max
  20         15.8 / 15.8 s                          1.7 / 3.3 s
  50 (8-12)  15.9-17.0 / 17.5 s; once 60.3 s (*)    4.5-7.4 / 5.3-8.7 s
  100 (~25)  17.7 / 21.2 s                          13.3 / 15.3 s
  200 (17-38) with backups every 30 s: 23.4 / 61.7 s (*)   22.5 / 33.0 s
  200 at 10 s backups did not settle twice: the survivor's renewals (mean 0.77 s,
  16 in flight: ~21/s for the 40/s needed) missed the 10 s deadline ~2,000 times,
  each miss another acquire and restore.
  (*) a lock the killed host's unfinished transaction left on a lease: 60 s.
Double connections beyond the renew deadline: none in any run.

After leases and fenced writes moved from transactions to compare-and-set (no lock
a killed host can leave behind), 200 accounts, TTL 15 s, backups every 10 s:
  run 1 (load 9.6; unit tests ran beside it): kill -9 p50 19.2 / max 26.1 s;
    SIGTERM: old host exited 17.2 s, logged in again max 25.7 s
  run 2 (load 7.5-16.5): kill -9 p50 19.6 / p90 24.4 / max 25.0 s; the survivor's
    renewals mean 0.40 s, none over 2.5 s (it settles now; before: did not);
    SIGTERM: old host exited 23.8 s (its 20 s shutdown bound), logged in max 27.7 s
  run 3, handoff renewing its leases until done (load 7.6-9.5): kill -9 p50 18.6 /
    p90 23.6 / max 24.4 s (95 of 200 over TTL + 5); SIGTERM: old host exited
    15.0 s, final backups p50 4.5 / max 11.2 s, logged in again p50 14.6 / max 29.3 s
  run 4, heartbeats counting 8 s instead of the TTL (load 6.8-11.5): kill -9 p50 15.7 /
    p90 21.2 / max 21.8 s (39 of 200 over TTL + 5); SIGTERM: old host exited 16.2 s,
    logged in again p50 19.3 / max 29.3 s
  Double connections: none in any run. Targets not met: max <= 20 s, graceful <= 3 s.

Session 3, after cutting Firestore round trips (one-batch backups of one-chunk
sessions, renewals and status writes without reading the lease first, one command
listing per batch of acquired leases, no mark-good round trip after a restore),
stopping the worker before the final backup, and renewals on threads and slots of
their own; 2 vCPU, quiet machine (load 1-5). Final code (fb1e17f), where the
preferred host taking its accounts back restores what the standby backed up
meanwhile (before, it drove its own stale copies: fixed this session):
  accounts  kill -9: p50 / max (over 20 s)   SIGTERM: old host exited / logged in again p50 / max
  20        12.3 / 12.3 s (0)                1.29 s / 1.23 / 2.29 s
  50        14.5 / 15.7 s (0)                2.09 s / 1.98 / 2.75 s
  200       14.4-15.0 / 16.9-17.6 s (0)      5.9-9.1 s / 6.6-11.0 / 9.2-13.7 s (2 runs)
  (start of the session: 200 accounts kill -9 18.3 / 26.0 s, 85 over 20 s; SIGTERM
  22.4 s / 24.0 / 37.9 s. Runs in between, with the stale copies driven instead of
  restored: kill -9 max 15.3-16.4 s, SIGTERM 5.1-6.5 s / max 7.4-9.3 s.)
At 200 accounts the old host's handoff: workers all stopped within 0.4 s; final
backups (55-100 of 200 changed since their last backup) done by 5.2-7.3 s; then the
`unattended` status write and the lease release. The Firestore emulator alone commits
about 400 fenced two-round-trip writes per second here (1,230 point reads, 440
limit-1 queries, 1,250 single writes per second at 16 threads); a handoff of 200
accounts is ~1,400 round trips on both hosts (final backup, unattended, release;
acquire, connecting, newest manifest, connected) plus the listeners' fan-out, and
the emulator and both connectors used 12.3 CPU-seconds of the 16 available in the
first 8 s. Met: kill -9 max <= TTL + 5 s at 200; graceful <= 3 s up to 50 accounts.
Not met: graceful <= 3 s at 200. Double connections: none in any run.

Session 4. The emulator's cost was its listeners: with two listeners on a 200-document
collection, each write to it was ~8x slower (measured: ~1,170 vs ~120-180 writes/s at 16
threads, also with the listeners in another process; a one-document listener costs
nothing), and both connectors listened to all of `accounts`. Statuses ride on lease
writes (`connecting` with the acquire, `unattended` with the release); the desired
set is polled (every 10 s, plus point reads on commands) and a released account
reaches the next holder as a hint in `handoffs/{connector}` (one document each).
200 accounts, fresh emulator, quiet machine (load 2-3):
  statuses on lease writes only:         SIGTERM exit 7.6 / back p50 6.9 / max 9.8 s
  ... and no `accounts` listener, no hint: SIGTERM exit 1.7 / back p50 4.2 / max 5.7 s
  with hints (4 runs: one with 48 lease slots, one under py-spy): SIGTERM exit 1.7-3.7 s, back p50 2.5-4.3 / max 3.9-6.0 s;
    the spread follows the final backups needed (0: 1.7 / 3.9 s; 51-63: 2.7-3.7 / 4.6-5.5 s;
    97: 3.7 / 6.0 s); kill -9 p50 12.6-13.1 / max 15.4-16.1 s.
  50 accounts: kill -9 max 12.6 s; SIGTERM exit 0.73 s, back max 1.02 s.
  20 accounts: kill -9 max 12.2 s; SIGTERM exit 0.52 s, back max 0.81 s.
The new holder is now the slow side: it took 200 leases 0.3-5.8 s after the SIGTERM while
its process held the GIL about a third of the time (py-spy --gil), i.e. it waits on the
emulator (one lease read batch, an acquire, the newest-manifest query and the `connected`
write per account). Not met: back within 3 s at 200. Double connections: none.

Session 5, 200 accounts, fresh emulator, quiet machine (load 2-3), SIGTERM once the
returning host answers /readyz (before: once registered):
  start of the session (2 runs, 45-51 final backups): exit 2.6-3.0 / back max 4.4 s
  leases acquired and released in batches:             exit 1.6-1.8 / back max 3.3-3.5 s
  ... and the shared worker spawned at start:          exit 1.35-1.6 / back max 3.2-3.3 s
  ... and the newest generations read ahead in batches (2 runs, 63 and 51 final backups):
      exit 1.57 / back p50 2.13 / max 2.93 s; exit 1.91 / p50 2.26 / max 3.43 s
  ... and status writes batched (3 runs; 101, 51 and 54 final backups):
      exit 2.65 / back max 4.51 s; exit 2.05 / p50 2.18 / p90 2.83 / max 3.03 s (9 over 3 s);
      exit 2.02 / p50 2.23 / p90 2.95 / max 3.16 s (12 over 3 s)
  ... and a hint kept while the account's poll read is out (it was dropped, leaving the
      account to the next poll 2 s later), 3 runs (51, 50 and 52 final backups):
      exit 1.65 / p50 2.18 / p90 2.77 / max 2.93 s; exit 1.52 / p50 2.12 / p90 2.81 / max 2.98 s;
      a third run (52): exit 1.65 / p50 2.25 / p90 2.94 / max 3.13 s (16 over 3 s)
  kill -9: p50 12.1-12.8 / max 14.9-15.5 s. Double connections: none.
The new host is CPU-bound here (its process near one core; the emulator, the old host and
the workers share the 2 vCPUs): 48 start slots instead of 16 made each ensure 3x slower.
The accounts whose sessions changed are released last (after their final backup), then
each costs a lease read and an acquire (about 0.5 s from the last hint to the last lease)
and a restore: the figure follows the number of final backups needed (45-101 of 200 in
this session's runs; the one run with 101 took 4.5 s, before the last change).
Back within 3 s at 200 with the final code: 2 of 3 runs (max 2.93, 2.98, 3.13 s), p90 under
3 s in all 3. The old host exits within 1.5-1.65 s.

Session 6, 200 accounts, fresh emulator per run, same machine and method. A clean release
now hints the lease as released (the next holder takes it without reading it) and the
new holder reads the newest backups while it takes the leases; a false "lease lost" (a
read sent beside the acquisition answering after it; 7 in session 5's last run) is gone.
The machine was slower than in session 5: session 5's final code (59a14c2), run again
alternately with this one (528e5bd), each run with its own count of final backups:
  59a14c2: exit 1.71 / back p50 3.11 / max 3.97 s (26); exit 3.21 / p50 4.74 / max 5.52 s (94)
  528e5bd: exit 2.74 / back p50 3.68 / max 4.63 s (50); exit 2.27 / p50 2.81 / max 3.76 s (50)
  528e5bd, 3 more runs: max 3.86 s (78), 3.95 s (65), 6.60 s (119: the old host took 4.2 s
  to write them and exited after 5.2 s); with timing lines (more logging): 3.12 s (27)
  kill -9: p50 12.6-13.8 / max 14.9-16.0 s (7 runs). Double connections: none.
In the timing-line runs the last accounts now wait on start slots (up to 0.8 s: 16 ensures
at once, each 0.05-0.3 s on a saturated machine) and, with many final backups, on the old
host (two round trips per backup, 32 at once). sys.setswitchinterval(0.001) was tried and
made it worse (4.16 s with 45, 4.94 s with 79). Not met here: back within 3 s at 200.

Session 7, same machine and method. Final backups go out in groups (one batched read and
one commit for the one-chunk backups of up to 50 accounts, four groups at once), and the
event loop's events are stored off it, grouped. Session 6's final code (3bac937) and this
code (17f1e3b) alternated, then 3 more runs of this code; (n) = final backups needed:
  3bac937: exit 2.50 / back p50 2.86 / max 3.89 s (62); exit 2.96 / p50 3.66 / max 4.81 s (84);
           exit 2.49 / p50 3.14 / max 4.23 s (35)
  17f1e3b: exit 2.44 / back p50 3.75 / max 4.74 s (56); exit 2.82 / p50 2.27 / max 3.77 s (65);
           exit 2.23 / p50 2.75 / max 3.77 s (56); then exit 2.33 / p50 2.65 / max 3.52 s (73),
           exit 3.28 / p50 3.40 / max 4.54 s (84), exit 2.32 / p50 3.30 / max 4.15 s (68)
  final backups written by (max): 3bac937 1.45-2.44 s, 17f1e3b 1.23-2.13 s
  kill -9: p50 12.5-13.5 / max 15.1-15.8 s. Double connections: none.
The run-to-run spread (3.5-4.8 s) is wider than the difference between the two. With timing
lines: under load a session snapshot takes 10-20 ms (2 ms on a quiet machine), a restore
0.2-0.5 s; accounts still wait up to ~1 s for a start slot, and 0.3-1.2 s pass between a
release and the acquisition. Not met here: back within 3 s at 200.

Session 8, same machine and method. Timing lines showed the machine saturated (95-100 %
of both CPUs from the SIGTERM on; the new holder's process ~30 %, its worker ~13 %, the
Firestore emulator ~18 %, the old host ~15 %, the Pub/Sub emulator ~8 %). Changes: the
old host leaves the live set while its workers stop; a clean hint overtakes a lease read
still out; an unchanged session is recognised from its file bytes (no SQLite copy, no
integrity check); the outbox's thread adds share transactions; a hinted takeover checks
its disk copies ahead and reads the newest backups in batches of 20. Session 7's final
code (f1444cd) and this code (39a902f) alternated, no timing lines; (n) = final backups:
  f1444cd: exit 2.73 / back p50 2.55 / max 4.59 s (52); exit 2.85 / p50 3.39 / max 4.79 s (61);
           exit 2.71 / p50 3.04 / max 4.41 s (91); final backups written by 1.70-1.86 s
  39a902f: exit 2.73 / back p50 3.46 / max 4.21 s (62); exit 2.05 / p50 2.99 / max 4.07 s (54);
           exit 2.79 / p50 3.48 / max 4.52 s (92); final backups written by 1.05-1.83 s
  kill -9: p50 12.5-14.3 / max 15.0-16.4 s. Double connections: none.
With timing lines (6 runs, as the parts landed): 4.12, 4.31, 4.16, 3.73, 4.01, 3.45 s. An ensure of a
disk copy needing no restore went from p50 0.09 to 0.04 s; the old host's check of an
unchanged group of 40-45 sessions from 0.25-0.95 s to 0.13-0.19 s. What is left on the
new host's path is its reads ahead: 0.85-1.3 s for 20 accounts under load. That is the
GIL: measured alone (bench-free emulator), a get_all of 20 documents takes 20 ms, 390 ms
beside one busy Python thread in the same process (each streamed document waits for a
forced GIL switch, 5 ms), and 32 ms with the machine saturated by other processes;
sys.setswitchinterval(0.001) brings it to 84 ms there, but in this bench (2 runs) it gave
max 5.11 s (90) and 4.05 s (89), against 4.52 s (92) without: not adopted.
Not met here: back within 3 s at 200.

Session 9, same machine and method. Changes: a clean release names the releaser's newest
backup in its hint (the new holder reads nothing for a disk copy at least as new, and only
the named manifests of the others, in one batched read: before, summaries then manifests
for all); the outbox paces its drains in a burst (0.25 s), so an account's events go out in
one Pub/Sub call; no Thread.start on the event loop (the pools start their threads up
front, the Pub/Sub client's publish calls go from a worker thread: py-spy had caught the
loop waiting in Thread.start); the hint receiver clears what it heard from a thread of its
own (in the listener's callback each clear held up the next hint by a round trip: 0.78 s
once). A probe of the new holder's event loop (now wa_keeper_event_loop_lag_seconds) woke
70-165 ms late, once 455 ms, through a takeover before these; 13-39 ms late on average
after. Session 8's final code (fc31d13) alternated with this session's code as it landed;
(n) = final backups needed:
  fc31d13: max 3.84 (66), 4.18 (74), 4.51 (58), 4.80 (71), 3.88 (43), 5.33 (95), 3.80 (57),
           4.72 (75); final backups written by 1.00-1.95 s
  hints only (907715e): 3.62 (71), 4.43 (77); and pacing (104f364): 4.15 (77), 3.65 (58);
  and no Thread.start on the loop (b72edb7): 3.58 (68), 8.16 (109: that run's old host took
  7.2 s, its final backups 5.8 s, with the machine's load average at 4-6; the next run of the
  same code, 109 again, took 2.3 s and 3.97 s); and the hint clears (6c16176): 3.62 (52,
  timing lines), 3.77 (74), 4.80 (99)
  kill -9 (21 runs): p50 12.2-14.2 / max 15.2-16.8 s. Double connections: none.
Within the run-to-run spread, which follows the count of final backups: fc31d13 means 4.38 s
over 8 runs, this session's variants 3.95 s over 9 (timing-line runs in, the 8.16 s run left
out). Not a clear win.
The last accounts now wait most for a start slot (prefetched -> slot up to 1.0-1.15 s: 16
ensures at once on a saturated machine, 0.05-0.35 s each) and 0.9 s between their release
and their acquisition (hint 0.3 s, the acquisition commit of 50 leases 0.4 s).
Not met here: back within 3 s at 200.

Session 10, same machine and method; (n) = final backups needed.
- Where the CPU goes (sampled from /proc every 0.2 s, the 3.5 s from the SIGTERM, run at
  3.78 s with 75 final backups): 6.4 of the 6.9 CPU-seconds the two CPUs have; the new
  holder 2.3 (about one CPU from 1.5 s on: one process, one GIL), the old host's side ~1.2
  (a process that exited in the window: the old host or its worker), the
  Firestore emulator 1.1, the new holder's sim worker 0.8, the Pub/Sub emulator 0.5. The
  handoff is bound by the machine, not by a wait.
- The count of sessions changed since their last backup mostly decides the figure: 2.29 s (6),
  3.54 s (55), 3.42 s (73), 3.78 s (75), 4.02 s (78), 4.43 s (83), 4.53 s (112), 6.90 s (156;
  a test patch held events 5 s), 8.70 s (134; load average 6.6).
- Events wait while the connector starts or hands off accounts (the outbox's `yield_to`,
  at most 2 s): py-spy had the new holder's publishing at about a fifth of its GIL samples.
  Alternated: 3.42 (73) and 4.02 (78) against 4.54 (98) and 4.49 (95) without the hand-off
  part; earlier, yielding to starts only 3.64 (52), 4.43 (83), 4.53 (112) against 3.82 (67),
  4.41 (97), 8.70 (134, load 6.6) before. Within the spread.
- Tried and taken back: releasing an unchanged account as soon as its final backup was
  checked, not after its group's uploads. On this machine the new holder's starts then ran
  beside the old host's backups of the changed sessions, the last to be released: 5.29 (91),
  4.98 (68), 3.97 (51) against 4.30 (73), 4.11 (78). With the hosts on machines of their
  own it may pay off; not measured.
- Checked and ruled out: renewals conflicting with the batched final backups (the commit is
  fenced on the lease's update_time): in the two runs counted, each of the 8 final-backup
  batches committed at its first try.
- Holding events 5 s instead of 2 (alternated): 4.59 (73), 2.85 (50), 3.95 (97) against
  2.49 (29), 2.79 (67), 3.69 (53). Not better; 2 s stays.
- The final code (9c9a29d and the same behaviour before it), 11 runs: 2.29 (6), 2.49 (29),
  2.72 (29), 2.79 (67), 2.96 (73), 3.42 (73), 3.54 (55), 3.69 (53), 3.96 (75), 4.02 (78),
  4.28 (99); mean 3.29 s, within 3 s in 5 of 11. Session 9's final code, today: 3.78 (75),
  4.43 (67), 3.82 (67), 4.41 (97), 8.70 (134, load average 6.6). The machine's load average
  at the SIGTERM was 3.2-4.6 in the final code's runs, 3.0-6.6 in the others: part of the
  difference may be the machine. kill -9 (22 runs): p50 12.3-14.4 / max 14.6-17.1 s. Double
  connections: none.
Not met here: back within 3 s at 200 every time (met in 5 of 11 runs, when fewer sessions
changed since their last backup).

Session 11, a different machine of the same kind (2 vCPU, quiet: load average 0.4-4.5 at the
SIGTERM), fresh emulators per run; (n) = final backups needed. Session 10's final code, as it
was, ran here at 0.94-1.18 s (max) in 6 runs, but with only 0-21 final backups: sessions taken
over together churned in step with their logins, and their backups with them, so the count
changed at the SIGTERM depended on when it came. Changes:
- `--hold-s` (default 20 s): the survivor holds every account that long before its SIGTERM;
  the gentle rebalancing (6 handoffs a minute) moves 6 back to the preferred host meanwhile,
  so the graceful phase measures the accounts the old host held (194; 200 with --hold-s 0).
- The sim's key churn starts at a random point of its interval per connection: 88-125 of
  194-200 sessions changed at the SIGTERM, run after run (before: 0-46 at a 20 s hold,
  109-157 at 16-18 s).
- Session 10's "ruled out" was wrong: with every session changed (--churn-ms 1000) the old
  host's own renewals (taken together, renewed together) failed final-backup batches; one
  group of 50 took 57 commits and 1.27 s (the stored lease 5 s newer than the one read). A
  failing batch is now read afresh once before it is split. Alternated with the code without
  it (same sim and bench), churn 1 s: 2.76 (182), 2.48 (176) against 2.87 (177), 2.37 (176);
  default: 2.16 (130) against 2.01 (119). Within the spread: not every run meets the conflict.
The final code (f7a29b2), logged in again max (n):
  default (hold 20 s, churn 5 s): 2.29 (102), 1.84 (95), 2.24 (114), 2.07 (88); old host
    exited 1.19-1.35 s
  --hold-s 0 (200 accounts): 1.91 (124), 1.91 (125); exited 1.40-1.60 s
  --churn-ms 1000 (nearly every session changed): 2.64 (190), 2.74 (178), 2.76 (182),
    2.48 (176); exited 1.40-2.12 s
  feda4a1 (the release command; takeovers unchanged): default 2.24 (81), --hold-s 0 2.30 (129)
  kill -9 (43 runs today, profiled ones in): p50 11.7-13.7 / max 13.4-15.2 s. Double connections:
    none in any run.
The machine was again CPU-bound through the handoff (83-98 % of both CPUs from 0.25 s after
the SIGTERM; the new holder near one CPU from 1.8 s on). Met on this machine: back within
3 s at 200 in every run, including every session changed. On session 10's slower, busier
machine the same code took 2.3-4.3 s: the figure depends on the machine's spare CPU.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - mypy sees the module this way
import requests
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from connector.lease import LeaseConfig
from tests import emulator
from tests.integration import failover_support as fs
from tests.integration.sim_records import Connection, double_connections
from tests.integration.stack_support import Stack, wait_until
from tests.pubsub_pull import unique_topic

A, B = "bench-a", "bench-b"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def back_after(moment: float, records: list[Connection], accounts: list[str]) -> dict[str, float]:
    """Seconds from `moment` to each account's first login after it."""
    first: dict[str, float] = {}
    for record in sorted(records, key=lambda r: r.start):
        if record.start >= moment and record.account not in first:
            first[record.account] = record.start - moment
    return {account: first[account] for account in accounts if account in first}


def summary(label: str, seconds: dict[str, float], bound: float | None = None) -> None:
    values = list(seconds.values())
    line = (
        f"  {label}: p50 {statistics.median(values):6.2f} s   p90 {percentile(values, 0.9):6.2f} s"
        f"   max {max(values):6.2f} s   ({len(values)} accounts)"
    )
    if bound is not None:
        late = sorted((s, a) for a, s in seconds.items() if s > bound)
        line += f"   over {bound:g} s: {len(late)}"
        if late:
            line += " (" + ", ".join(f"{a} {s:.1f} s" for s, a in late[-5:]) + ")"
    print(line, flush=True)


def histogram(stack: Stack, connector: str, name: str) -> dict[str, float]:
    """The samples of one /metrics histogram of the connector: sample name (with labels) -> value."""
    _proc, port = stack.connectors[connector]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            sample, value = line.rsplit(" ", 1)
            values[sample] = float(value)
    return values


def loop_lag(before: dict[str, float], after: dict[str, float]) -> str:
    """How late the event loop woke between two readings of its lag histogram."""
    base = "wa_keeper_event_loop_lag_seconds"
    count = after.get(f"{base}_count", 0.0) - before.get(f"{base}_count", 0.0)
    if not count:
        return "no probes"
    mean = (after.get(f"{base}_sum", 0.0) - before.get(f"{base}_sum", 0.0)) / count
    over = []
    for le in ("0.1", "0.25"):
        bucket = f'{base}_bucket{{le="{le}"}}'
        within = after.get(bucket, 0.0) - before.get(bucket, 0.0)
        over.append(f"over {le} s: {(count - within) / count:.0%}")
    return f"{count:.0f} probes, mean {mean:.3f} s late, " + ", ".join(over)


def renewals(stack: Stack, connector: str) -> str:
    """The connector's lease renewal latency so far (/metrics histogram): count, mean, share over 2 s."""
    values = histogram(stack, connector, "wa_keeper_lease_renew_seconds")
    count = values.get("wa_keeper_lease_renew_seconds_count", 0.0)
    if not count:
        return "no renewals yet"
    mean = values.get("wa_keeper_lease_renew_seconds_sum", 0.0) / count
    within = values.get('wa_keeper_lease_renew_seconds_bucket{le="2.5"}', count)
    return f"{count:.0f} renewals, mean {mean:.2f} s, over 2.5 s: {(count - within) / count:.0%}"


def kill_9(stack: Stack, accounts: list[str], ttl_s: float, deadline_s: float) -> float:
    """Returns the monotonic time at which the survivor was seen holding every account."""
    proc, _port = stack.connectors[A]
    killed_at = time.time()
    proc.signal(signal.SIGKILL)
    proc.popen.wait(10)
    try:
        wait_until(
            f"{B} holding every account", lambda: fs.connected_once(stack, B, accounts), deadline_s, 0.5
        )
    except AssertionError:
        print(f"{B}'s lease renewals: {renewals(stack, B)}", flush=True)
        raise
    held_since = time.monotonic()
    print(f"\nkill -9 of {A} holding {len(accounts)} accounts, TTL {ttl_s:g} s ({_load()}):")
    summary(
        "logged in again from the survivor",
        back_after(killed_at, fs.records(stack, accounts), accounts),
        ttl_s + 5,
    )
    print(f"  {B}'s lease renewals since it started: {renewals(stack, B)}")
    return held_since


def ready(stack: Stack, connector: str) -> bool:
    _proc, port = stack.connectors[connector]
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    return False


def handoff(
    stack: Stack,
    accounts: list[str],
    env: dict[str, str],
    deadline_s: float,
    *,
    held_since: float,
    hold_s: float,
) -> None:
    """`A` comes back as a standby; once it is ready (registered, placement run, its worker up:
    /readyz) and `B` has held every account for `hold_s`, `B` gets SIGTERM."""
    launched = time.monotonic()
    stack.start_connector(A, **env)
    wait_until(f"{A} registered", lambda: fs.registered(stack, [A]), 30)
    wait_until(f"{A} ready", lambda: ready(stack, A), 30, 0.1)
    print(f"\n{A} back as a standby, ready after {time.monotonic() - launched:.1f} s ({_load()})")
    time.sleep(max(0.0, held_since + hold_s - time.monotonic()))
    proc, _port = stack.connectors[B]
    held = [a for a, (holder, _) in fs.leases(stack.client, accounts).items() if holder == B]
    lag_before = histogram(stack, A, "wa_keeper_event_loop_lag_seconds")
    started = time.time()
    signalled = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = proc.popen.wait(120)
    exited = time.monotonic() - signalled
    wait_until(f"{A} holding every account", lambda: fs.connected_once(stack, A, accounts), deadline_s, 0.5)
    lag = loop_lag(lag_before, histogram(stack, A, "wa_keeper_event_loop_lag_seconds"))
    moved = f"; {len(accounts) - len(held)} moved back to {A} before it" if len(held) < len(accounts) else ""
    print(f"\ngraceful handoff, SIGTERM of {B} holding {len(held)} accounts{moved} ({_load()}):")
    print(
        f"  {B} exited (final backups, unattended, leases released): {exited:6.2f} s (exit code {code}; target <= 3 s)"
    )
    written = final_backups(stack, held, started)
    if written:
        summary("final backup written by the old host", written)
    else:
        print("  final backups: none needed (no session changed since its last backup)")
    summary(
        "logged in again from the preferred host",
        back_after(started, fs.records(stack, held), held),
        3.0,
    )
    print(f"  {A}'s event loop from the SIGTERM until all were back (probe every 50 ms): {lag}")


def final_backups(stack: Stack, accounts: list[str], since: float) -> dict[str, float]:
    """Seconds from `since` to each account's last backup by the old host (manifest `created_at`)."""
    found: dict[str, float] = {}
    for account in accounts:
        by_b = [m for m in fs.manifests(stack.client, account) if m["connector_id"] == B]
        if by_b and by_b[-1]["created_at"].timestamp() >= since:
            found[account] = by_b[-1]["created_at"].timestamp() - since
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--ttl", type=float, default=15.0, help="WA_KEEPER_LEASE_TTL_S (default 15)")
    parser.add_argument("--backup-interval", type=float, default=10.0, help="WA_KEEPER_BACKUP_INTERVAL_S")
    parser.add_argument("--churn-ms", type=int, default=5000, help="sim-server key churn per account")
    parser.add_argument(
        "--hold-s",
        type=float,
        default=20.0,
        help="seconds the survivor holds every account before its SIGTERM (default 20: two backup"
        " intervals, so the count of sessions changed since their last backup is a steady one)",
    )
    parser.add_argument("--batch", type=int, default=25, help="accounts paired at once while setting up")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the stack's processes
    emulator.require_emulators()
    emulator.reset_firestore()
    lease = LeaseConfig.for_ttl(args.ttl)
    env = {
        "WA_KEEPER_LEASE_TTL_S": str(args.ttl),
        "WA_KEEPER_BACKUP_INTERVAL_S": str(args.backup_interval),
        "WA_KEEPER_HEALTH_INTERVAL_S": "30",
    }
    accounts = fs.preferring(A, [A, B], args.accounts, "fo")
    tmp = Path(tempfile.mkdtemp(prefix="wa-keeper-failover-"))
    topic = unique_topic("bench-failover")
    publisher = pubsub_v1.PublisherClient()
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=publisher.topic_path(emulator.project_id(), topic))
    stack = Stack(tmp=tmp, topic=topic, client=firestore.Client(project=emulator.project_id()))
    deadline_s = (
        args.ttl + 60 + args.accounts
    )  # a minute of lock expiry (see tests/integration/test_failover.py)
    try:
        set_up(stack, accounts, env, args)
        held_since = kill_9(stack, accounts, args.ttl, deadline_s)
        handoff(stack, accounts, env, deadline_s, held_since=held_since, hold_s=args.hold_s)

        found = double_connections(fs.records(stack, accounts), time.time())
        beyond = [d for d in found if d.seconds > lease.renew_deadline_s]
        longest = max((d.seconds for d in found), default=0.0)
        print(
            f"\ndouble connections (sim-server records, both phases): {len(found)} intervals,"
            f" longest {longest:.2f} s, beyond the {lease.renew_deadline_s:g} s renew deadline: {len(beyond)}"
        )
    except AssertionError:
        statuses = fs.statuses(stack.client, accounts)
        print(f"failed; statuses {collections.Counter(statuses.values())}; logs kept in {tmp}", flush=True)
        raise
    finally:
        stack.close()
    if args.keep_logs:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def set_up(stack: Stack, accounts: list[str], env: dict[str, str], args: argparse.Namespace) -> None:
    """sim-server, `bench-a` pairing every account (in batches), then `bench-b` as its standby."""
    stack.start_sim("--keepalive-ms", "5000", "--churn-ms", str(args.churn_ms))
    stack.start_connector(A, **env)
    print(f"pairing {len(accounts)} simulated accounts on {A}…", flush=True)
    t0 = time.monotonic()
    for start in range(0, len(accounts), args.batch):
        fs.pair_many(stack, accounts[start : start + args.batch], 600)
    wait_until("a good backup of each", lambda: _good(stack, accounts), 600, 1)
    wait_until(f"{A} holding all", lambda: fs.connected_once(stack, A, accounts), 120, 0.5)
    print(f"paired and backed up in {time.monotonic() - t0:.1f} s; {_load()}", flush=True)
    stack.start_connector(B, **env)
    wait_until("both registered", lambda: fs.registered(stack, [A, B]), 30)
    settle(stack, accounts, args.ttl)
    standby = stack.http_status(B) or {}
    print(f"{B} standing by: standby={standby.get('standby')}, held={standby.get('held')}; {_load()}")


def settle(stack: Stack, accounts: list[str], ttl_s: float) -> None:
    """Wait until no lease of the holder changed epoch for a whole TTL (no renewal trouble left)."""
    last, since = fs.leases(stack.client, accounts), time.monotonic()
    while time.monotonic() - since < ttl_s:
        time.sleep(1)
        now = fs.leases(stack.client, accounts)
        if now != last:
            last, since = now, time.monotonic()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs"


def _good(stack: Stack, accounts: list[str]) -> bool:
    docs = fs.accounts_docs(stack.client, accounts)
    return all((doc.get("backup") or {}).get("good") for doc in docs.values())


if __name__ == "__main__":
    sys.exit(main())
