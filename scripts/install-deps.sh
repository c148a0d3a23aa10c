#!/usr/bin/env bash
# Sets up everything befw's demo and tests need on a fresh Debian 12 machine with Node 20:
#   - apt packages: iptables, ipset, nftables (the firewall backends: firewall=iptables and
#     firewall=nft; the integration suite runs on both), iproute2, beanstalkd and haproxy (the
#     syslog reactor's queue and load balancer, used by its tests, benchmark and demo)
#   - a Consul binary (CONSUL_BIN if set; else Debian 11's consul package, fetched through a
#     temporary sources list built from this machine's own Debian archive URI, into .cache/consul)
#   - npm packages (npm install, at the locked versions) and the TypeScript build
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

# The main Debian archive URI this machine uses (deb822 .sources or one-line .list files).
archive_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) main = 1 }
      /^$/ { if (uri != "" && main && uri !~ /security/) { print uri; exit } uri = ""; main = 0 }
      END { if (uri != "" && main && uri !~ /security/) print uri }
    ' "$f" | head -n 1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/ && $(i+1) !~ /-/) print $i; break } }' "$f"
  done
}

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

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  # `npm install`, not `npm ci`: the lockfile cannot list msgpackr's optional native builds for
  # other platforms (the registry this machine reaches does not serve them), which `npm ci`
  # rejects as out of sync; `npm install` keeps the locked versions and skips what is absent.
  npm install --no-audit --no-fund --loglevel=error
fi
log "building"
npm run --silent build
log "ready"
