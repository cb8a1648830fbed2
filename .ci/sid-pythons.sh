#!/usr/bin/env bash
# CPython 3.14 and 3.15 for gomp's tests, in a Debian-unstable chroot.
#
# This machine's Debian has no CPython past 3.13, and Debian's 3.14/3.15
# packages need a newer glibc than it has, so they run in a chroot of Debian
# unstable that carries them with their headers, venv support and test suites
# (libpython3.X-testsuite), plus Go, gcc and make to build gomp there.
#
#   .ci/sid-pythons.sh ensure        build the chroot, or reuse it (needs root)
#   .ci/sid-pythons.sh run CMD...    run a shell line in the project, inside it
#   .ci/sid-pythons.sh path          print where it lives
#
# The chroot lives in $GOMP_SID_ROOT (default /opt/gomp-sid) and is reused
# from one run to the next on the same machine (about 3 minutes and 1.5 GB
# to make, from Debian's mirror only). The project directory is bind-mounted
# at its own absolute path inside, so a venv made inside (.venv-3.14) names
# the same paths on both sides and two projects can use the chroot at once.
set -euo pipefail

root=${GOMP_SID_ROOT:-/opt/gomp-sid}
mirror=${GOMP_SID_MIRROR:-http://deb.debian.org/debian}
versions="3.14 3.15"
project=$(cd "$(dirname "$0")/.." && pwd)

packages() {
  local list="gcc,libc6-dev,make,golang-go,git,ca-certificates,procps"
  for v in $versions; do
    list="$list,python$v,python$v-dev,python$v-venv,libpython$v-testsuite"
  done
  echo "$list"
}

complete() {
  for v in $versions; do
    [ -x "$root/usr/bin/python$v" ] || return 1
    [ -d "$root/usr/lib/python$v/test" ] || return 1
  done
  [ -x "$root/usr/bin/go" ] || [ -x "$root/usr/lib/go/bin/go" ]
}

bind() {  # bind HOSTDIR [INSIDE]: mount once, leave mounted (cheap, and
          # unmounting could pull the floor from under a concurrent run)
  local inside="$root${2:-$1}"
  mkdir -p "$inside"
  if mountpoint -q "$inside"; then
    # A mount left by an earlier run may hold a directory that has since been
    # deleted and made again at the same path (a CI machine re-cloning the
    # project): then it shows the dead directory (no links, another inode)
    # and every command inside fails in getcwd. Such a mount serves nobody;
    # detach it and bind the live directory.
    local want have
    want=$(stat -c '%d:%i' "$1")
    have=$(stat -c '%d:%i %h' "$inside" 2>/dev/null || echo gone)
    [ "$have" != "$want 0" ] && [ "${have%% *}" = "$want" ] && return 0
    umount -l "$inside"
  fi
  mount --bind "$1" "$inside"
}

prepare() {
  for m in proc sys dev dev/pts dev/shm; do bind "/$m"; done
  # The host's certificates and pip settings, so that pip and the Go module
  # proxy behave inside as they do outside.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
  [ -f /etc/resolv.conf ] && cp /etc/resolv.conf "$root/etc/resolv.conf"
  bind "$project"
}

ensure() {
  [ "$(id -u)" = 0 ] || { echo "sid-pythons: needs root (chroot, mount)" >&2; exit 2; }
  if ! complete; then
    if ! command -v debootstrap >/dev/null; then
      apt-get update -qq && apt-get install -y -qq debootstrap
    fi
    if [ -x "$root/usr/bin/apt-get" ]; then   # a partial chroot: finish it
      prepare
      chroot "$root" apt-get update -qq
      chroot "$root" apt-get install -y -qq $(packages | tr , ' ')
    else
      debootstrap --variant=minbase --include="$(packages)" sid "$root" "$mirror"
    fi
  fi
  prepare
  for v in $versions; do chroot "$root" "python$v" -c 'import sys; print(sys.version.split()[0])'; done
  chroot "$root" go version
}

run() {
  complete || { echo "sid-pythons: no chroot at $root: run '$0 ensure' first" >&2; exit 2; }
  prepare
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    TERM="${TERM:-dumb}" CI="${CI:-}" \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GOFLAGS=-buildvcs=false PYTHONDONTWRITEBYTECODE=1 \
    /bin/bash -c "cd '$project' && $*"
}

case "${1:-}" in
  ensure) ensure ;;
  run) shift; [ $# -ge 1 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }; run "$*" ;;
  path) echo "$root" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
