# Sourced by scripts/install-deps.sh and packaging/clean-root.sh: the main Debian archive URI
# this machine uses (deb822 .sources or one-line .list files), read at run time so no archive
# host name is written into the repository.
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
