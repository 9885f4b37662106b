#!/usr/bin/env bash
# Install (or upgrade in place) the updater on this host, from this checkout. Run as root.
#
#   ./install.sh [--python PATH]                install or upgrade; keeps /etc/updater and /var/lib/updater
#   ./install.sh --python-standalone FILE|URL   the same on a relocatable CPython (hosts without Python)
#   ./install.sh --uninstall                    remove the program and its units; keep configuration and state
#
# Where things go: the program and its dependencies as pure-Python packages in /opt/updater/lib
# with a launcher, /opt/updater/bin/updater, that finds a Python >= 3.11 at every start (so an OS
# update that moves Python to another minor version needs nothing done), `updater` on root's
# PATH (/usr/local/bin, or /opt/bin where /usr is read-only as on Flatcar), the units in
# /etc/systemd/system, a commented example /etc/updater/config.toml only if there is none.
#
# --python-standalone takes a python-build-standalone "install_only" tarball (a file, or an https
# URL fetched with curl) for this machine's architecture. Its sha256 must equal the one pinned
# below for that architecture, checked before anything is unpacked; it is unpacked to
# /opt/updater-python, beside the program and not inside it, so that replacing the program never
# removes the interpreter it runs on. Later runs of ./install.sh (upgrades) use it again
# without the option; --uninstall removes it too.
set -euo pipefail

# The pinned relocatable CPython: https://github.com/astral-sh/python-build-standalone/releases
# (sha256 values as in that release's SHA256SUMS). To move to another release, change all four.
PBS_RELEASE=20260610
PBS_PYTHON=3.12.13
PBS_SHA256_x86_64=c218f50baeb2c06a30c2f03db5986b2bad6ab7c8a52faad2d5a59bda0677b93a
PBS_SHA256_aarch64=bc74cf1bb517651868342b0619b21eaaf9f94a2022c9c61886dd980e16fb091b

PREFIX=/opt/updater
STANDALONE=/opt/updater-python
UNIT_DIR=/etc/systemd/system
CONFIG_DIR=/etc/updater
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

usage() {
    sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

python=""
standalone=""
standalone_sha=""
action=install
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || die "--python needs a path"; python=$2; shift 2 ;;
        --python=*) python=${1#--python=}; shift ;;
        --python-standalone) [ $# -ge 2 ] || die "--python-standalone needs a file or an https URL"
            standalone=$2; shift 2 ;;
        --python-standalone=*) standalone=${1#--python-standalone=}; shift ;;
        --uninstall) action=uninstall; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
if [ -n "$python" ] && [ -n "$standalone" ]; then
    die "--python and --python-standalone exclude each other"
fi

# Where `updater` goes on PATH: /usr/local/bin unless /usr is read-only (Flatcar), then /opt/bin.
bin_dir() {
    if [ -d /usr/local/bin ] && [ -w /usr/local/bin ] && touch /usr/local/bin/.updater-probe 2>/dev/null; then
        rm -f /usr/local/bin/.updater-probe
        echo /usr/local/bin
    else
        echo /opt/bin
    fi
}

# A Python >= 3.11 with venv (install.sh builds the wheels in a throwaway venv): --python, then
# the usual names on PATH.
find_python() {
    local candidates=("$@")
    # An earlier --python-standalone comes first: upgrades keep the interpreter it was installed on.
    [ ${#candidates[@]} -gt 0 ] || candidates=("$STANDALONE/bin/python3" python3 python3.13 python3.12 python3.11 /opt/python/bin/python3)
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
                 or use the pinned relocatable CPython (python-build-standalone $PBS_PYTHON):
                   ./install.sh --python-standalone \\
                     $(standalone_url)
MSG
    exit 1
}

# The pinned python-build-standalone tarball for this machine, and its sha256.
standalone_arch() {
    case "$(uname -m)" in
        x86_64|amd64) echo x86_64 ;;
        aarch64|arm64) echo aarch64 ;;
        *) return 1 ;;
    esac
}

standalone_url() {
    local arch
    arch=$(standalone_arch) || arch=x86_64
    echo "https://github.com/astral-sh/python-build-standalone/releases/download/$PBS_RELEASE/cpython-$PBS_PYTHON+$PBS_RELEASE-$arch-unknown-linux-gnu-install_only.tar.gz"
}

# Check FILE against the sha256 pinned for this architecture, before anything is unpacked; the
# sum goes to $standalone_sha.
verify_standalone() {
    local file=$1 arch expected actual var
    arch=$(standalone_arch) || die "no python-build-standalone is pinned for $(uname -m) (x86_64 and aarch64 are)"
    var=PBS_SHA256_$arch
    expected=${!var}
    actual=$(sha256sum "$file" | cut -d' ' -f1) || die "cannot read $file"
    if [ "$actual" != "$expected" ]; then
        die "refusing $file: its sha256 is $actual, expected $expected" \
            "(python-build-standalone $PBS_PYTHON+$PBS_RELEASE install_only, $arch); nothing was unpacked"
    fi
    standalone_sha=$actual
}

# --python-standalone FILE|URL: fetch (https only), verify, unpack to $STANDALONE. The same
# tarball as last time (its sha256 is kept in $STANDALONE/.sha256) leaves it as it is; another
# one replaces it whole.
install_standalone() {
    local source=$1 file sha work
    case "$source" in
        https://*)
            command -v curl >/dev/null 2>&1 || die "curl is needed to download $source"
            work=$(mktemp -d "${TMPDIR:-/var/tmp}/updater-python.XXXXXX")
            cleanup+=("$work")
            file="$work/python.tar.gz"
            say "downloading $source"
            curl --fail --silent --show-error --location --retry 3 --output "$file" "$source" || \
                die "could not download $source"
            ;;
        *://*) die "--python-standalone takes a file or an https URL, not $source" ;;
        *) file=$source; [ -f "$file" ] || die "--python-standalone: no such file: $file" ;;
    esac
    verify_standalone "$file"
    sha=$standalone_sha
    if [ -x "$STANDALONE/bin/python3" ] && [ "$(cat "$STANDALONE/.sha256" 2>/dev/null)" = "$sha" ]; then
        say "kept $STANDALONE (the same tarball, sha256 $sha)"
        return 0
    fi
    mkdir -p "$(dirname "$STANDALONE")"
    local new
    new=$(mktemp -d "$STANDALONE.new.XXXXXX")
    tar --extract --gzip --no-same-owner --file "$file" --directory "$new" || {
        rm -rf "$new"; die "could not unpack $file"; }
    if [ ! -x "$new/python/bin/python3" ]; then
        rm -rf "$new"
        die "$file is not an install_only tarball (no python/bin/python3 in it)"
    fi
    echo "$sha" >"$new/python/.sha256"
    rm -rf "$STANDALONE.old"
    [ ! -e "$STANDALONE" ] || mv "$STANDALONE" "$STANDALONE.old"
    mv "$new/python" "$STANDALONE"
    rm -rf "$new" "$STANDALONE.old"
    say "unpacked python-build-standalone to $STANDALONE (sha256 $sha)"
}

# Temporary directories, removed when the script exits however it exits.
cleanup=()
remove_cleanup() { [ ${#cleanup[@]} -eq 0 ] || rm -rf "${cleanup[@]}"; }
trap remove_cleanup EXIT

# The program and its dependencies, as pure-Python wheels (py3-none-any) unpacked into
# $PREFIX/lib, and the launcher as $PREFIX/bin/updater (and bin/python, for the trigger's unit).
# Nothing compiled and no bytecode lands there, so any Python >= 3.11 runs it as it is: an OS
# update that moves the interpreter to another minor version needs nothing rebuilt (the
# launcher finds the interpreter at every start). pip, in a throwaway venv, builds and fetches
# the wheels (a dependency published only as an sdist is built into a wheel; one with compiled
# wheels is replaced by its pure wheel of the same version, or refused).
install_program() {
    local py=$1 work new pyver pip
    umask 022  # the trigger's unit runs as a throwaway user: it must read $PREFIX
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/updater-install.XXXXXX")
    cleanup+=("$work")
    "$py" -m venv "$work/venv" >/dev/null || die "could not make a build environment with $py -m venv"
    pip=("$work/venv/bin/python" -m pip --quiet --disable-pip-version-check)
    # An sdist (sdnotify publishes nothing else) is built the standard way, in an isolated
    # environment with its build backend fetched like any dependency (or found in
    # PIP_FIND_LINKS): else Debian 12's pip 23.0.1 runs `setup.py bdist_wheel` with the venv's
    # setuptools, which cannot without the `wheel` package. pip >= 23.1 takes this way by itself
    # when the venv has no `wheel`, and a pip that no longer knows the setting ignores it.
    PIP_USE_PEP517=1 "${pip[@]}" wheel --wheel-dir "$work/wheels" "$SOURCE" || \
        die "could not build the updater and its dependencies (pip wheel $SOURCE)"
    pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    pure_wheels "$work/wheels" "$pyver" "${pip[@]}"

    mkdir -p "$(dirname "$PREFIX")"
    new=$(mktemp -d "$PREFIX.new.XXXXXX")
    cleanup+=("$new")
    "${pip[@]}" install --no-index --no-deps --no-compile --target "$new/lib" "$work"/wheels/*.whl || \
        die "could not unpack the wheels into $new/lib"
    rm -rf "$new/lib/bin"  # console scripts pointing at the build venv; the launcher replaces them
    mkdir -p "$new/bin"
    install -m 0755 "$SOURCE/launcher/updater" "$new/bin/updater"
    ln -s updater "$new/bin/python"
    # Looked for first by the launcher: the interpreter chosen here (--python, a standalone).
    echo "$py" >"$new/interpreter"
    install -m 0644 "$SOURCE/README.md" "$new/README.md"
    chmod 0755 "$new"

    rm -rf "$PREFIX.old"
    [ ! -e "$PREFIX" ] || mv "$PREFIX" "$PREFIX.old"
    mv "$new" "$PREFIX"
    rm -rf "$PREFIX.old"
}

# Whether a wheel's file name says pure Python 3: NAME-VERSION[-BUILD]-PYTAG-none-any.whl with
# py3 among the python tags (py3, py2.py3); cp311-none-any would still be one version's.
is_pure() {
    local tags=${1%.whl} platform abi python
    platform=${tags##*-}
    tags=${tags%-*}
    abi=${tags##*-}
    tags=${tags%-*}
    python=${tags##*-}
    [ "$platform" = any ] && [ "$abi" = none ] || return 1
    case ".$python." in *.py3.*) return 0 ;; esac
    return 1
}

# Every wheel in DIR pure (py3-none-any): each other one is replaced by its project's pure wheel
# of the same version for Python PYVER, or the install stops naming it.
pure_wheels() {
    local dir=$1 pyver=$2 wheel file name rest version
    shift 2
    for wheel in "$dir"/*.whl; do
        file=${wheel##*/}
        ! is_pure "$file" || continue
        name=${file%%-*}
        rest=${file#*-}
        version=${rest%%-*}
        case "${name,,}" in
        pyyaml)
            # Apprise imports it only to read YAML configuration files, which the updater never
            # gives it; it has no pure wheel, and a compiled one would tie us to one Python.
            rm -f "$wheel"
            continue
            ;;
        esac
        "$@" download --no-deps --only-binary=:all: --platform any --implementation py --abi none \
            --python-version "$pyver" --dest "$dir/pure" "$name==$version" || \
            die "$name $version has no pure-Python wheel (py3-none-any), and only those are installed:" \
                "a compiled module would tie the updater to one minor version of Python"
        rm -f "$wheel"
    done
    if [ -d "$dir/pure" ]; then
        mv "$dir"/pure/*.whl "$dir"/
        rmdir "$dir/pure"
    fi
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
    if [ -n "$standalone" ]; then
        install_standalone "$standalone"
        py=$(find_python "$STANDALONE/bin/python3") || no_python
    elif [ -n "$python" ]; then
        py=$(find_python "$python") || no_python
    else
        py=$(find_python) || no_python
    fi
    say "using $py ($("$py" -c 'import platform; print(platform.python_version())'))"
    install_program "$py"

    local bin
    bin=$(bin_dir)
    mkdir -p "$bin"
    ln -sfn "$PREFIX/bin/updater" "$bin/updater"

    install -m 0644 "$SOURCE/units/updater.service" "$UNIT_DIR/updater.service"
    install -m 0644 "$SOURCE/units/updater.timer" "$UNIT_DIR/updater.timer"
    # The CI trigger (docs/trigger.md): installed, not enabled; it needs /etc/updater/trigger.secret.
    install -m 0644 "$SOURCE/units/updater-trigger.socket" "$UNIT_DIR/updater-trigger.socket"
    install -m 0644 "$SOURCE/units/updater-trigger@.service" "$UNIT_DIR/updater-trigger@.service"
    install -m 0644 "$SOURCE/units/updater-trigger.path" "$UNIT_DIR/updater-trigger.path"

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
    # An upgrade with the trigger enabled listens with the new units (the path unit follows).
    systemctl try-restart updater-trigger.socket >/dev/null 2>&1 || true
    systemctl enable --now updater.timer >/dev/null 2>&1 || systemctl enable --now updater.timer
    say "installed $($PREFIX/bin/updater --version); updater.timer runs it every minute"
    say "watch it: journalctl -u updater -f"
}

do_uninstall() {
    [ "$(id -u)" = 0 ] || die "run as root"
    if [ -d /run/systemd/system ]; then
        systemctl disable --now updater.timer >/dev/null 2>&1 || true
        systemctl disable --now updater-trigger.socket updater-trigger.path >/dev/null 2>&1 || true
        systemctl stop updater.service >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_DIR/updater.service" "$UNIT_DIR/updater.timer" \
        "$UNIT_DIR/updater-trigger.socket" "$UNIT_DIR/updater-trigger@.service" \
        "$UNIT_DIR/updater-trigger.path"
    [ -d /run/systemd/system ] && systemctl daemon-reload
    for bin in /usr/local/bin /opt/bin; do
        if [ -L "$bin/updater" ] && [ "$(readlink "$bin/updater")" = "$PREFIX/bin/updater" ]; then
            rm -f "$bin/updater"
        fi
    done
    rm -rf "$PREFIX" "$STANDALONE" /var/cache/updater
    say "removed the program and its units; kept $CONFIG_DIR and /var/lib/updater"
}

# Sourced (tests/test_flatcar.py tests the functions above), it defines them and does nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    "do_$action"
fi
