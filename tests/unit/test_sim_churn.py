"""When the simulated key churn of one connection happens (connector/sim/churn.py)."""

from __future__ import annotations

import itertools

import pytest

from connector.sim.churn import churn_delays


@pytest.mark.parametrize(
    ("interval_s", "phase", "first_four"),
    [
        (5.0, 0.0, [0.0, 5.0, 5.0, 5.0]),
        (5.0, 0.5, [2.5, 5.0, 5.0, 5.0]),
        (5.0, 1.0, [5.0, 5.0, 5.0, 5.0]),
        (0.05, 0.2, [0.01, 0.05, 0.05, 0.05]),
    ],
)
def test_the_first_churn_comes_at_its_phase_then_one_interval_apart(
    interval_s: float, phase: float, first_four: list[float]
) -> None:
    assert list(itertools.islice(churn_delays(interval_s, phase), 4)) == pytest.approx(first_four)


@pytest.mark.parametrize(("interval_s", "phase"), [(0.0, 0.5), (-1.0, 0.5), (5.0, -0.1), (5.0, 1.5)])
def test_a_bad_interval_or_phase_is_refused(interval_s: float, phase: float) -> None:
    with pytest.raises(ValueError, match="churn needs an interval"):
        next(churn_delays(interval_s, phase))
