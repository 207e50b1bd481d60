"""Frames on the sim-server websocket: round trips and rejected frames."""

from __future__ import annotations

import pytest

from connector.sim import wire


@pytest.mark.parametrize(
    "frame",
    [
        wire.Hello(account="a", jid="1:1@s.whatsapp.net", noise_fp="ab" * 16, label="host:1"),
        wire.PairRequest(account="a", noise_fp="cd" * 16, label=""),
        wire.Ping(seq=3),
        wire.LogoutRequest(),
    ],
)
def test_worker_frames_round_trip(frame: wire.Frame) -> None:
    assert wire.load(wire.dump(frame), wire.TO_SERVER) == frame


@pytest.mark.parametrize(
    "frame",
    [
        wire.QrCode(code="2@x,y", expires_at="2026-01-01T00:00:00.000000Z"),
        wire.PairSuccess(jid="1:1@s.whatsapp.net"),
        wire.PairTimeout(),
        wire.Welcome(conn_id="c1", keepalive_ms=100, churn_ms=0),
        wire.Pong(seq=3),
        wire.LoggedOutFrame(reason_code=401, on_connect=True),
        wire.StreamReplacedFrame(),
        wire.StreamErrorFrame(code=515),
        wire.TemporaryBanFrame(code=101, expires_at="2026-01-01T00:00:00.000000Z"),
        wire.ClientOutdatedFrame(),
        wire.ConnectFailureFrame(code=503, message="busy"),
        wire.LogoutDone(),
    ],
)
def test_server_frames_round_trip(frame: wire.Frame) -> None:
    assert wire.load(wire.dump(frame), wire.TO_WORKER) == frame


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nope", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"seq": 1}', "unknown op 'None'"),
        ('{"op": "pong", "seq": 1}', "unknown op 'pong'"),  # a server frame sent to the server
        ('{"op": "ping"}', None),  # seq has a default
        ('{"op": "ping", "seq": -1}', "ping: seq: must be at least 0"),
        ('{"op": "hello", "account": "a", "jid": "j", "noise_fp": "short", "label": ""}', "noise_fp"),
        ('{"op": "logout", "extra": true}', "logout: extra: unknown field"),
        ("x" * (wire.MAX_FRAME_BYTES + 1), "frame over"),
    ],
)
def test_bad_frames_are_rejected(text: str, problem: str | None) -> None:
    if problem is None:
        assert wire.load(text, wire.TO_SERVER) == wire.Ping(seq=0)
        return
    with pytest.raises(wire.SimWireError, match=problem):
        wire.load(text, wire.TO_SERVER)


def test_the_fingerprint_is_not_the_key() -> None:
    key = bytes(range(32))
    assert key.hex() not in wire.fingerprint(key)
    assert wire.fingerprint(key) == wire.fingerprint(bytes(range(32)))
    assert wire.fingerprint(key) != wire.fingerprint(bytes(32))
