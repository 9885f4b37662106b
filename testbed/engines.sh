#!/usr/bin/env bash
# The newer Docker engines the tests also run against, fetched from Debian without touching the
# host's package sources: a private apt configuration, packages unpacked with `dpkg -x`, nothing
# installed. Idempotent: each engine is fetched once and kept under $ENGINES (default
# /var/tmp/updater-engines). The tests' default engine is 28.5 with containerd-2 and the
# containerd image store (testbed/engine.py DEFAULT); Debian 12's own docker.io (20.10) is one of
# the classic ones.
#
#   26.1           Debian 13 trixie's docker.io
#   28.5           Debian sid's docker.io, as Flatcar Stable ships Docker 28
#   containerd-2   sid's containerd 2.x, for 28.5 with the containerd image store (Docker 29's default)
#   cosign         sid's cosign 3.x (a static binary), which signs the images the signature tests verify
#   etcd           sid's etcd-server and etcd-client 3.5 (static binaries), the fleet store the
#                  etcd tier runs as a 3-member cluster (Debian 12 has only 3.4.23)
#   crane          sid's crane (go-containerregistry), whose `crane registry serve` is the second
#                  registry implementation the registry tier runs against
#   compose        sid's docker-compose (compose v2, one Go binary), the CLI plugin the compose
#                  units run as `docker compose`; machines get it at
#                  /usr/local/lib/docker/cli-plugins/docker-compose
set -euo pipefail

ENGINES=${ENGINES:-/var/tmp/updater-engines}
declare -A WANTED=(
    [26.1]="docker.io=26.1.5+dfsg1-9+deb13u1+b1"
    [28.5]="docker.io=28.5.2+dfsg4-5"
    [containerd-2]="containerd=2.1.9+ds1-5"  # with the host's runc: sid's needs glibc 2.38
    [cosign]="cosign=3.1.1-2"
    [etcd]="etcd-server=3.5.30-2 etcd-client=3.5.30-2"
    [crane]="crane=0.20.7+ds1-5"
    [compose]="docker-compose=2.40.3-3"
)

missing=()
for name in "${!WANTED[@]}"; do
    [ -f "$ENGINES/$name/.complete" ] || missing+=("$name")
done
[ ${#missing[@]} -eq 0 ] && exit 0

apt_dir=$ENGINES/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
key=/usr/share/keyrings/debian-archive-keyring.gpg
printf 'deb [signed-by=%s] %s trixie main\ndeb [signed-by=%s] %s sid main\n' \
    "$key" "$mirror" "$key" "$mirror" >"$apt_dir/sources.list"
apt=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
apt-get "${apt[@]}" update -qq

for name in "${missing[@]}"; do
    work=$(mktemp -d "$ENGINES/.fetch-XXXXXX")
    # shellcheck disable=SC2086  # the package list is meant to split
    (cd "$work" && apt-get "${apt[@]}" download -qq ${WANTED[$name]})
    mkdir -p "$work/root"
    for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
    rm -rf "${ENGINES:?}/$name"
    mv "$work/root" "$ENGINES/$name"
    echo "${WANTED[$name]}" >"$ENGINES/$name/.complete"
    rm -rf "$work"
done
