#!/usr/bin/env bash
# The clean Debian root the package test (test/integration/package.test.ts) installs befw into,
# built once and cached in .cache/pkgroot/:
#   root/        debootstrap --variant=minbase of this machine's Debian release, from the archive
#                this machine's apt uses, with what befw depends on (iptables, ipset) and what the
#                test runs there (systemd-analyze, man-db: verify checks that Documentation=
#                names an installed man page), and nodejs from nodejs.deb; never changed by the
#                test, which installs into an overlay on top of it
#   nodejs.deb   this machine's own nodejs package, repacked (dpkg-repack): Debian 12's nodejs is
#                18, befw needs 20, and the archive that served it here may be gone
# Idempotent: a second run only checks. Needs root, debootstrap and dpkg-repack.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$PWD/.cache/pkgroot

log() { printf '[clean-root] %s\n' "$*" >&2; }
die() { printf '[clean-root] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$cache/root/.befw-clean-root-3" ] && [ -f "$cache/nodejs.deb" ] && exit 0
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
command -v dpkg-repack >/dev/null || die "dpkg-repack not found (apt-get install dpkg-repack)"
mkdir -p "$cache"

# shellcheck source=scripts/lib/archive.sh
. scripts/lib/archive.sh

if [ ! -f "$cache/nodejs.deb" ]; then
  log "repacking this machine's nodejs $(dpkg-query -W -f='${Version}' nodejs)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # It warns about every file a later `npm install -g npm` replaced; the package still works.
  (cd "$tmp" && dpkg-repack --generate nodejs >"$cache/dpkg-repack.log" 2>&1) || die "dpkg-repack failed; see $cache/dpkg-repack.log"
  dir=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [ -f "$dir/DEBIAN/control" ] || die "dpkg-repack gave no package directory"
  # No compression: built once, read once per test run; xz of a 100 MB binary costs a minute.
  dpkg-deb -Znone --root-owner-group --build "$dir" "$cache/nodejs.deb.tmp" >/dev/null
  mv "$cache/nodejs.deb.tmp" "$cache/nodejs.deb"
fi
if [ ! -f "$cache/root/.befw-clean-root-3" ]; then
  uri=$(archive_uri | head -n 1)
  [ -n "$uri" ] || die "no Debian archive URI in /etc/apt/sources.list.d or /etc/apt/sources.list"
  # shellcheck disable=SC1091
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$suite" ] || die "no VERSION_CODENAME in /etc/os-release"
  log "debootstrap --variant=minbase $suite from $uri (once; cached in .cache/pkgroot)"
  rm -rf "$cache/root.tmp"
  debootstrap --variant=minbase --include=systemd,man-db,iptables,ipset,python3,ca-certificates \
    "$suite" "$cache/root.tmp" "$uri" >"$cache/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $cache/debootstrap.log"
  rm -rf "$cache/root.tmp/var/cache/apt/archives/"*.deb "$cache/root.tmp/var/lib/apt/lists/"*_Packages
  # befw's one dependency Debian 12 cannot provide, installed as apt would have it.
  cp "$cache/nodejs.deb" "$cache/root.tmp/tmp/nodejs.deb"
  chroot "$cache/root.tmp" dpkg --force-unsafe-io -i /tmp/nodejs.deb >>"$cache/debootstrap.log" 2>&1 ||
    die "installing nodejs in the root failed; see $cache/debootstrap.log"
  rm -f "$cache/root.tmp/tmp/nodejs.deb"
  touch "$cache/root.tmp/.befw-clean-root-3"
  rm -rf "$cache/root"
  mv "$cache/root.tmp" "$cache/root"
fi

log "clean root ready: $cache/root ($(du -sh "$cache/root" | cut -f1)), $(du -h "$cache/nodejs.deb" | cut -f1) nodejs.deb"
