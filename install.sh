#!/usr/bin/env bash
# Install (or upgrade in place) the updater on this host, from this checkout. Run as root.
#
#   ./install.sh [--python PATH]    install or upgrade; keeps /etc/updater and /var/lib/updater
#   ./install.sh --uninstall        remove the program and its units; keep configuration and state
#
# Where things go: the program in its own virtual environment under /opt/updater, `updater` on
# root's PATH (/usr/local/bin, or /opt/bin where /usr is read-only as on Flatcar), the units in
# /etc/systemd/system, a commented example /etc/updater/config.toml only if there is none.
set -euo pipefail

PREFIX=/opt/updater
UNIT_DIR=/etc/systemd/system
CONFIG_DIR=/etc/updater
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

usage() {
    sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

python=""
action=install
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || die "--python needs a path"; python=$2; shift 2 ;;
        --python=*) python=${1#--python=}; shift ;;
        --uninstall) action=uninstall; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

# Where `updater` goes on PATH: /usr/local/bin unless /usr is read-only (Flatcar), then /opt/bin.
bin_dir() {
    if [ -d /usr/local/bin ] && [ -w /usr/local/bin ] && touch /usr/local/bin/.updater-probe 2>/dev/null; then
        rm -f /usr/local/bin/.updater-probe
        echo /usr/local/bin
    else
        echo /opt/bin
    fi
}

# A Python >= 3.11 with venv: --python, then the usual names on PATH.
find_python() {
    local candidates=("$@")
    [ ${#candidates[@]} -gt 0 ] || candidates=(python3 python3.13 python3.12 python3.11 /opt/python/bin/python3)
    for candidate in "${candidates[@]}"; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

no_python() {
    cat >&2 <<MSG
install.sh: no Python >= 3.11 with the venv module found${python:+ at $python}.
  Debian/Ubuntu: apt-get install python3 python3-venv
  Flatcar:       enable the official python system extension
                   echo python >> /etc/flatcar/enabled-sysext.conf  (then reboot)
                 or unpack a relocatable CPython (python-build-standalone, install_only) under
                 /opt/python and run: ./install.sh --python /opt/python/bin/python3
                 (README.md, "Flatcar", has the pinned version and its sha256)
MSG
    exit 1
}

preflight() {
    [ "$(id -u)" = 0 ] || die "run as root (it writes /opt/updater, /etc/systemd/system and /etc/updater)"
    [ -d /run/systemd/system ] || die "systemd is not running here (no /run/systemd/system); the updater needs it"
    if ! command -v docker >/dev/null 2>&1 && [ ! -S /run/docker.sock ] && [ ! -S /var/run/docker.sock ]; then
        die "no Docker here (no docker command, no /run/docker.sock); install Docker first"
    fi
}

do_install() {
    preflight
    local py
    if [ -n "$python" ]; then
        py=$(find_python "$python") || no_python
    else
        py=$(find_python) || no_python
    fi
    say "using $py ($("$py" -c 'import platform; print(platform.python_version())'))"

    # A venv made by another Python (an OS update moved it) is made anew; config and state stay.
    if [ -x "$PREFIX/bin/python" ] && ! "$PREFIX/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$PREFIX"
    fi
    if [ -x "$PREFIX/bin/python" ] && [ "$(readlink -f "$PREFIX/bin/python")" != "$(readlink -f "$py")" ]; then
        rm -rf "$PREFIX"
    fi
    [ -x "$PREFIX/bin/python" ] || "$py" -m venv "$PREFIX"
    "$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
    install -m 0644 "$SOURCE/README.md" "$PREFIX/README.md"

    local bin
    bin=$(bin_dir)
    mkdir -p "$bin"
    ln -sfn "$PREFIX/bin/updater" "$bin/updater"

    install -m 0644 "$SOURCE/units/updater.service" "$UNIT_DIR/updater.service"
    install -m 0644 "$SOURCE/units/updater.timer" "$UNIT_DIR/updater.timer"

    mkdir -p "$CONFIG_DIR/config.d"
    if [ ! -e "$CONFIG_DIR/config.toml" ]; then
        install -m 0644 "$SOURCE/docs/config.example.toml" "$CONFIG_DIR/config.toml"
        say "wrote $CONFIG_DIR/config.toml (no units yet: add one with 'updater add UNIT --image REF')"
    else
        say "kept $CONFIG_DIR/config.toml"
    fi
    "$PREFIX/bin/updater" --config "$CONFIG_DIR/config.toml" check --json >/dev/null 2>&1 || \
        say "warning: 'updater check' does not pass yet; run it to see why"

    systemctl daemon-reload
    systemctl enable --now updater.timer >/dev/null 2>&1 || systemctl enable --now updater.timer
    say "installed $($PREFIX/bin/updater --version); updater.timer runs it every minute"
    say "watch it: journalctl -u updater -f"
}

do_uninstall() {
    [ "$(id -u)" = 0 ] || die "run as root"
    if [ -d /run/systemd/system ]; then
        systemctl disable --now updater.timer >/dev/null 2>&1 || true
        systemctl stop updater.service >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_DIR/updater.service" "$UNIT_DIR/updater.timer"
    [ -d /run/systemd/system ] && systemctl daemon-reload
    for bin in /usr/local/bin /opt/bin; do
        if [ -L "$bin/updater" ] && [ "$(readlink "$bin/updater")" = "$PREFIX/bin/updater" ]; then
            rm -f "$bin/updater"
        fi
    done
    rm -rf "$PREFIX"
    say "removed the program and its units; kept $CONFIG_DIR and /var/lib/updater"
}

"do_$action"
