"""The thresholds as firebase-functions params: defaults, overrides, bad values, the emulator's file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from firebase_functions.params import IntParam

from control import params
from control.errors import ControlError
from policy import PolicyConfig

ENV_LOCAL = Path(__file__).parents[2] / "functions" / ".env.local"
DECLARED = {p.name: p for p in vars(params).values() if isinstance(p, IntParam)}


def test_unset_params_give_the_design_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DECLARED:
        monkeypatch.delenv(name, raising=False)
    assert params.load_config() == PolicyConfig()


def test_every_setting_of_the_config_has_a_param() -> None:
    assert len(DECLARED) == len(PolicyConfig.__dataclass_fields__)


def test_params_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_POLICY_MAX_STRIKES", "4")
    monkeypatch.setenv("WA_POLICY_STRIKE_WINDOW_S", "90")
    config = params.load_config()
    assert config.max_strikes == 4 and config.strike_window == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("WA_POLICY_MAX_STRIKES", "two", "param WA_POLICY_MAX_STRIKES must be an integer"),
        ("WA_POLICY_COMMAND_TTL_S", "0", "params: policy setting command_ttl must be positive"),
        ("WA_POLICY_KEEP_GENERATIONS", "-1", "params: policy setting keep_generations must not be negative"),
    ],
)
def test_a_bad_param_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ControlError) as caught:
        params.load_config()
    assert str(caught.value) == message


def test_the_emulators_env_file_holds_every_param_at_its_default() -> None:
    lines = [line for line in ENV_LOCAL.read_text().splitlines() if line and not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert values == {name: str(p.default) for name, p in DECLARED.items()}
