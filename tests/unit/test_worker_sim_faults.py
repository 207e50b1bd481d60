"""Fault requests of the sim-server API: each valid shape, and each kind of bad one."""

from __future__ import annotations

from typing import Any

import pytest

from connector.sim.faults import Fault, FaultError, parse_fault


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"fault": "logout"}, Fault("logout")),
        ({"fault": "logout", "when": "next_connect"}, Fault("logout", when="next_connect")),
        ({"fault": "unlink"}, Fault("unlink")),
        ({"fault": "restart"}, Fault("restart")),
        ({"fault": "drop"}, Fault("drop")),
        ({"fault": "ban", "expires_in_s": 60}, Fault("ban", code=101, expires_in_s=60)),
        ({"fault": "ban", "expires_in_s": 60, "code": 106}, Fault("ban", code=106, expires_in_s=60)),
        ({"fault": "server_error"}, Fault("server_error", code=503, count=1)),
        ({"fault": "server_error", "code": 500, "count": 3}, Fault("server_error", code=500, count=3)),
        ({"fault": "outdated"}, Fault("outdated")),
        ({"fault": "silence"}, Fault("silence")),
        ({"fault": "unsilence"}, Fault("unsilence")),
    ],
)
def test_valid_faults(body: dict[str, Any], expected: Fault) -> None:
    assert parse_fault(body) == expected


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "body must be a JSON object"),
        ({}, "fault must be one of"),
        ({"fault": 3}, "fault must be one of"),
        ({"fault": "meteor"}, "fault must be one of"),
        ({"fault": "drop", "code": 1}, "drop takes no field 'code'"),
        ({"fault": "logout", "when": "tomorrow"}, "when must be 'now' or 'next_connect'"),
        ({"fault": "ban"}, "ban needs expires_in_s"),
        ({"fault": "ban", "expires_in_s": 0}, "expires_in_s must be an integer from 1"),
        ({"fault": "ban", "expires_in_s": True}, "expires_in_s must be an integer"),
        ({"fault": "ban", "expires_in_s": 10, "code": 99}, "code must be an integer from 101 to 199"),
        ({"fault": "server_error", "code": 502}, "code must be 500 or 503"),
        ({"fault": "server_error", "count": 0}, "count must be an integer from 1 to 100"),
        ({"fault": "server_error", "count": 1.5}, "count must be an integer"),
    ],
)
def test_bad_fault_requests_say_what_is_wrong(body: Any, problem: str) -> None:
    with pytest.raises(FaultError, match=problem):
        parse_fault(body)
