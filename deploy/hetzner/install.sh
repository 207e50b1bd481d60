#!/usr/bin/env bash
# Install or update the wa-keeper connector on a Debian/Ubuntu host (a Hetzner
# Cloud or dedicated server), from this source tree. Idempotent: each step checks
# first and does only what is missing or changed, so a second run changes nothing.
#
#   sudo deploy/hetzner/install.sh            # install or update, then start
#   deploy/hetzner/install.sh --dry-run       # print the steps, change nothing
#
# Steps: system user, directories, venv with the pinned packages, the settings file
# (created once from a template, never overwritten), the systemd unit, enable,
# start (restart when the package or the unit changed). A fresh settings file
# holds no backup key yet: the script stops before starting and says what to edit.
#
# Paths can be moved for tests and unusual hosts (defaults in brackets):
# WA_KEEPER_PREFIX [/opt/wa-keeper], WA_KEEPER_ETC [/etc/wa-keeper],
# WA_KEEPER_STATE [/var/lib/wa-keeper], WA_KEEPER_UNIT_DIR [/etc/systemd/system],
# WA_KEEPER_USER [wa-keeper], WA_KEEPER_PYTHON [python3.11]. The unit is written
# with the prefix, settings folder and user substituted; its state directory is
# always /var/lib/wa-keeper (systemd's StateDirectory).
set -euo pipefail

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=${WA_KEEPER_PREFIX:-/opt/wa-keeper}
ETC=${WA_KEEPER_ETC:-/etc/wa-keeper}
STATE=${WA_KEEPER_STATE:-/var/lib/wa-keeper}
UNIT_DIR=${WA_KEEPER_UNIT_DIR:-/etc/systemd/system}
SERVICE_USER=${WA_KEEPER_USER:-wa-keeper}
PYTHON=${WA_KEEPER_PYTHON:-python3.11}
UNIT=wa-keeper.service
ENV_FILE=$ETC/wa-keeper.env

DRY_RUN=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '==> %s\n' "$*"; }
skip() { printf '    ok: %s\n' "$*"; }
# run CMD...: do it, or in a dry run only show it.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '    would run: %s\n' "$*"
  else
    printf '    + %s\n' "$*"
    "$@"
  fi
}
die() { echo "install.sh: $*" >&2; exit 1; }

if [ "$DRY_RUN" = 1 ]; then
  echo "dry run: printing the steps, changing nothing"
elif [ "$(id -u)" != 0 ]; then
  die "run as root (sudo), or with --dry-run to see the steps"
fi
[ -f "$SOURCE/pyproject.toml" ] && [ -f "$SOURCE/requirements.lock" ] \
  || die "$SOURCE is not a wa-keeper source tree (no pyproject.toml / requirements.lock)"

# A hash of everything the installed package is built from: unchanged -> no reinstall.
source_hash() {
  (cd "$SOURCE" && find connector functions/wa_wire pyproject.toml requirements.lock README.md docs \
    -type f ! -path '*/__pycache__/*' -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum \
    | cut -c1-32)
}
restart_needed=0

step "system user $SERVICE_USER"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  skip "user $SERVICE_USER exists"
else
  run useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi

step "directories"
for dir in "$PREFIX" "$ETC" "$STATE"; do
  if [ -d "$dir" ]; then skip "$dir exists"; fi
done
[ -d "$PREFIX" ] || run install -d -m 0755 "$PREFIX"
[ -d "$ETC" ] || run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
[ -d "$STATE" ] || run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE"

step "virtualenv $PREFIX/venv with the pinned packages"
want=$(source_hash)
if [ -x "$PREFIX/venv/bin/wa-keeper" ] && [ "$(cat "$PREFIX/.source-hash" 2>/dev/null)" = "$want" ]; then
  skip "wa-keeper installed from this source ($want)"
else
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: apt-get install python3.11 python3.11-venv"
  [ -x "$PREFIX/venv/bin/python" ] || run "$PYTHON" -m venv "$PREFIX/venv"
  run "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check \
    --constraint "$SOURCE/requirements.lock" "$SOURCE"
  run "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$SOURCE"
  run rm -rf "$PREFIX/docs"
  run cp -r "$SOURCE/docs" "$PREFIX/docs"
  if [ "$DRY_RUN" = 1 ]; then
    printf '    would record the source hash %s in %s\n' "$want" "$PREFIX/.source-hash"
  else
    echo "$want" > "$PREFIX/.source-hash"
  fi
  restart_needed=1
fi

step "settings file $ENV_FILE"
fresh_settings=0
if [ -f "$ENV_FILE" ]; then
  skip "$ENV_FILE exists (never overwritten)"
else
  run install -m 0600 -o root -g root "$SOURCE/deploy/systemd/wa-keeper.env.example" "$ENV_FILE"
  fresh_settings=1
fi

step "systemd unit $UNIT_DIR/$UNIT"
# The unit as shipped, with this install's paths and user.
render_unit() {
  sed -e "s#/opt/wa-keeper#$PREFIX#g" -e "s#/etc/wa-keeper#$ETC#g" \
    -e "s#^User=wa-keeper\$#User=$SERVICE_USER#" -e "s#^Group=wa-keeper\$#Group=$SERVICE_USER#" \
    "$SOURCE/deploy/systemd/$UNIT"
}
if cmp -s <(render_unit) "$UNIT_DIR/$UNIT"; then
  skip "unit is up to date"
else
  if [ "$DRY_RUN" = 1 ]; then
    printf '    would write: %s (mode 0644)\n' "$UNIT_DIR/$UNIT"
  else
    printf '    + write %s\n' "$UNIT_DIR/$UNIT"
    render_unit > "$UNIT_DIR/$UNIT.tmp"
    chmod 0644 "$UNIT_DIR/$UNIT.tmp"
    mv "$UNIT_DIR/$UNIT.tmp" "$UNIT_DIR/$UNIT"
  fi
  run systemctl daemon-reload
  restart_needed=1
fi

step "enable $UNIT"
if systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
  skip "enabled"
else
  run systemctl enable "$UNIT"
fi

step "start $UNIT"
if [ "$fresh_settings" = 1 ] || ! grep -Eq '^WA_KEEPER_BACKUP_KEY(_FILE)?=.+' "$ENV_FILE" 2>/dev/null; then
  echo "    not started: put the backup key and the project into $ENV_FILE," \
    "then run: systemctl start $UNIT (see docs/operations.md)"
  exit 0
fi
if ! systemctl is-active --quiet "$UNIT" 2>/dev/null; then
  run systemctl start "$UNIT"
elif [ "$restart_needed" = 1 ]; then
  run systemctl restart "$UNIT"
else
  skip "running, nothing changed"
fi
