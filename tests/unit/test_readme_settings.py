"""The README's configuration tables match the code: every variable the connector reads and
every policy param, each with the default the code uses, and nothing the code does not read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from firebase_functions.params import IntParam

from connector.settings import SETTING_DEFAULTS
from control import params

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ENV_NAME = re.compile(r"WA_KEEPER_[A-Z0-9_]+|SESSIONS_PATH|GOOGLE_CLOUD_PROJECT|[A-Z]+_EMULATOR_HOST")
READ_BY_GOOGLE = {"GOOGLE_APPLICATION_CREDENTIALS"}
"""Listed in the README, read by Google's client libraries rather than our code."""
NOT_SETTINGS = ("connector/demo/",)
"""`wa-keeper demo` sets variables for the processes it starts; it reads no operator setting."""


def readme_table(text: str, first_header: str) -> dict[str, tuple[str, str]]:
    """{name: (default, meaning)} of the README table whose first column is `first_header`."""
    rows: dict[str, tuple[str, str]] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith(f"| {first_header} |"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not line.startswith("|---"):
            name, default, meaning = (cell.strip() for cell in line.strip("|").split("|", 2))
            assert name.startswith("`") and name.endswith("`"), line
            assert name.strip("`") not in rows, f"{name} is listed twice"
            rows[name.strip("`")] = (default, meaning)
    assert rows, f"no README table headed {first_header!r}"
    return rows


def names_read_by_the_connector() -> set[str]:
    """Environment variable names written as string constants in connector/ (its settings)."""
    found: set[str] = set()
    for path in (REPO / "connector").rglob("*.py"):
        if str(path.relative_to(REPO)).startswith(NOT_SETTINGS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ENV_NAME.fullmatch(node.value)
            ):
                found.add(node.value)
    return found


def settings_problems(text: str) -> list[str]:
    """What differs between the README's settings table and the connector's code."""
    table = readme_table(text, "variable")
    read = names_read_by_the_connector()
    problems = [f"{n}: read by the code, missing from the README" for n in sorted(read - set(table))]
    problems += [f"{n}: in the README, read by no code" for n in sorted(set(table) - read - READ_BY_GOOGLE)]
    for name, default in SETTING_DEFAULTS.items():
        if name in table and table[name][0] != f"`{default}`":
            problems.append(f"{name}: README default {table[name][0]}, code {default!r}")
    for name in set(table) - set(SETTING_DEFAULTS):
        if not table[name][0].startswith("("):
            problems.append(f"{name}: no default in the code, the README says {table[name][0]}")
    problems += [f"{n}: no meaning given" for n, (_d, meaning) in table.items() if len(meaning) < 10]
    return problems


def params_problems(text: str) -> list[str]:
    """What differs between the README's params table and functions/control/params.py."""
    declared = {p.name: p.default for p in vars(params).values() if isinstance(p, IntParam)}
    table = readme_table(text, "param")
    problems = [f"{n}: declared, missing from the README" for n in sorted(set(declared) - set(table))]
    problems += [f"{n}: in the README, not declared" for n in sorted(set(table) - set(declared))]
    for name, default in declared.items():
        if name in table and table[name][0] != f"`{default}`":
            problems.append(f"{name}: README default {table[name][0]}, code {default!r}")
    return problems


def test_the_settings_table_matches_the_connectors_code() -> None:
    assert set(SETTING_DEFAULTS) <= names_read_by_the_connector()
    assert settings_problems(README.read_text()) == []


def test_the_params_table_matches_the_functions_params() -> None:
    assert params_problems(README.read_text()) == []


def test_differences_are_reported() -> None:
    text = README.read_text()
    changed = text.replace("| `WA_KEEPER_LEASE_TTL_S` | `15` |", "| `WA_KEEPER_LEASE_TTL_S` | `20` |")
    dropped = "\n".join(line for line in text.splitlines() if "`WA_KEEPER_TOPIC`" not in line)
    invented = text.replace(
        "| `SESSIONS_PATH` |", "| `WA_KEEPER_COLOUR` | (none) | a setting nobody reads |\n| `SESSIONS_PATH` |"
    )
    param = text.replace("| `WA_POLICY_MAX_STRIKES` | `2` |", "| `WA_POLICY_MAX_STRIKES` | `3` |")
    assert settings_problems(changed) == ["WA_KEEPER_LEASE_TTL_S: README default `20`, code '15'"]
    assert settings_problems(dropped) == ["WA_KEEPER_TOPIC: read by the code, missing from the README"]
    assert settings_problems(invented) == ["WA_KEEPER_COLOUR: in the README, read by no code"]
    assert params_problems(param) == ["WA_POLICY_MAX_STRIKES: README default `3`, code 2"]
