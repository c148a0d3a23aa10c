#!/usr/bin/env bash
# Sets up everything befw's demo and tests need on a fresh Debian 12 machine with Node 20:
#   - apt packages: iptables, ipset, nftables (the firewall backends: firewall=iptables and
#     firewall=nft; the integration suite runs on both), iproute2, beanstalkd and haproxy (the
#     syslog reactor's queue and load balancer, used by its tests, benchmark and demo)
#   - dnsmasq-base, kea-dhcp4-server, freeradius, freeradius-utils and udhcpc for the
#     users-from-leases test (no service left running: Kea's and FreeRADIUS's are installed
#     without starting and then disabled)
#   - a Consul binary (CONSUL_BIN if set; else Debian 11's consul package, fetched through a
#     temporary sources list built from this machine's own Debian archive URI, into .cache/consul)
#   - promtool (PROMTOOL_BIN if set; else unpacked from Debian 12's prometheus package, without
#     installing it, into .cache/promtool)
#   - npm packages (npm ci, at the locked versions) and the TypeScript build
#   - debootstrap and dpkg-repack, and the clean Debian root the package test installs the .deb
#     into (packaging/clean-root.sh, cached in .cache/pkgroot)
# Idempotent: a second run only checks. Needs root (apt, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '[install-deps] %s\n' "$*" >&2; }
die() { printf '[install-deps] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, ipset, iptables and network namespaces need it)"

command -v node >/dev/null || die "Node.js 20 or newer is required (node not found)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required (found $(node --version))"

need=()
for cmd in ipset iptables ip6tables iptables-restore nft xtables-monitor stdbuf ip beanstalkd haproxy; do
  command -v "$cmd" >/dev/null || need+=("$cmd")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing iptables ipset nftables iproute2 coreutils beanstalkd haproxy (missing: ${need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends iptables ipset nftables iproute2 coreutils beanstalkd haproxy >/dev/null
fi

# The servers of the users-from-leases test (test/integration/users.test.ts runs them inside its
# namespaces): dnsmasq-base is dnsmasq without its service; udhcpc is busybox's DHCP client.
# Kea's and FreeRADIUS's packages ship services that would answer on 67 and 1812/1813 on this
# host: they are installed with service starts refused (policy-rc.d, when the machine has none)
# and then disabled.
users_need=()
for cmd in dnsmasq kea-dhcp4 freeradius radclient udhcpc; do
  command -v "$cmd" >/dev/null || users_need+=("$cmd")
done
if [ ${#users_need[@]} -gt 0 ]; then
  log "installing dnsmasq-base kea-dhcp4-server freeradius freeradius-utils udhcpc (missing: ${users_need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  users_pkgs=(dnsmasq-base kea-dhcp4-server freeradius freeradius-utils udhcpc)
  apt-get install -y -qq --no-install-recommends "${users_pkgs[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${users_pkgs[@]}" >/dev/null; }
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -d /run/systemd/system ]; then
    systemctl disable --now freeradius.service kea-dhcp4-server.service >/dev/null 2>&1 || true
  fi
fi

# shellcheck source=scripts/lib/archive.sh
. scripts/lib/archive.sh

consul_ok() { [ -x "$1" ] && "$1" version >/dev/null 2>&1; }

if [ -n "${CONSUL_BIN:-}" ]; then
  consul_ok "$CONSUL_BIN" || die "CONSUL_BIN=$CONSUL_BIN is not a working consul binary"
  log "using CONSUL_BIN=$CONSUL_BIN"
elif consul_ok "$root/.cache/consul/consul"; then
  log "consul already in .cache/consul"
else
  uri=$(archive_uri | head -n 1)
  [ -n "$uri" ] || die "no Debian archive URI found in /etc/apt/sources.list.d or /etc/apt/sources.list; set CONSUL_BIN"
  log "fetching Debian 11 (bullseye) consul package from this machine's archive"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
  echo "deb $uri bullseye main" >"$tmp/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download consul >/dev/null)
  dpkg -x "$tmp"/deb/consul_*.deb "$tmp/x"
  mkdir -p "$root/.cache/consul"
  install -m 0755 "$tmp/x/usr/bin/consul" "$root/.cache/consul/consul"
  consul_ok "$root/.cache/consul/consul" || die "the fetched consul binary does not run"
  log "consul installed: $("$root/.cache/consul/consul" version | head -n 1)"
fi

# promtool (the metrics test runs `promtool check metrics` on a real agent's /metrics): only the
# binary, unpacked from Debian 12's prometheus package into .cache/promtool. Installing the
# package would also start a Prometheus server.
promtool_ok() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
if [ -n "${PROMTOOL_BIN:-}" ]; then
  promtool_ok "$PROMTOOL_BIN" || die "PROMTOOL_BIN=$PROMTOOL_BIN is not a working promtool binary"
  log "using PROMTOOL_BIN=$PROMTOOL_BIN"
elif promtool_ok "$root/.cache/promtool/promtool"; then
  log "promtool already in .cache/promtool"
else
  log "fetching promtool from Debian's prometheus package (binary only, no server)"
  ptmp=$(mktemp -d)
  (cd "$ptmp" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null 2>&1) ||
    { apt-get update -qq && (cd "$ptmp" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null); }
  dpkg -x "$ptmp"/prometheus_*.deb "$ptmp/x"
  mkdir -p "$root/.cache/promtool"
  install -m 0755 "$ptmp/x/usr/bin/promtool" "$root/.cache/promtool/promtool"
  rm -rf "$ptmp"
  promtool_ok "$root/.cache/promtool/promtool" || die "the fetched promtool binary does not run"
  log "promtool installed: $("$root/.cache/promtool/promtool" --version 2>&1 | head -n 1)"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  # `npm ci`: exactly the locked versions, and the tracked package-lock.json is never rewritten
  # (`npm install` rewrote it on every fresh clone whenever it and package.json differed at all).
  npm ci --no-audit --no-fund --loglevel=error
fi
log "building"
npm run --silent build
if ! command -v debootstrap >/dev/null || ! command -v dpkg-repack >/dev/null; then
  log "installing debootstrap dpkg-repack (the package test's clean root)"
  apt-get install -y -qq --no-install-recommends debootstrap dpkg-repack >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap dpkg-repack >/dev/null; }
fi
bash packaging/clean-root.sh
log "ready"
