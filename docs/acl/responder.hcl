# befw responder (and `befw reactor unban`): Consul 1.4+ ACL system.
#   consul acl policy create -name befw-responder -rules @responder.hcl
#   consul acl token create -description "befw responder" -policy-name befw-responder
#   put the SecretID into /etc/befw/reactor.token (mode 0600, owned by befw-reactor):
#   responder.consul.tokenFile in reactor.json.
# `befw syslog` (the parser) needs no Consul token at all.

# Read the whole befw/ tree: rules_allow and aliases protect addresses from bans (a read that
# fails is a retry, never "not protected").
key_prefix "befw/" {
  policy = "read"
}

# Write bans where the config puts them, and nowhere else. This is rules_deny at world scope
# (the default action); add a block per set and scope the config names, e.g.
# "befw/$ipset$/dc1/rules_deny/". Never grant write on rules_allow or on the service grants:
# a stolen responder token must not be able to open anything.
key_prefix "befw/$ipset$/rules_deny/" {
  policy = "write"
}

# The audit record of each ban (by reactor, with the trigger, count and a sample line), beside
# the ban: the same sets and scopes under befw-audit/. Without it bans are still written, without
# records (the job's outcome says so).
key_prefix "befw-audit/$ipset$/rules_deny/" {
  policy = "write"
}

# Only with the user-lease action (users from DHCP and RADIUS): the users' aliases, which the
# prefix keeps to aliases named user.* (a key prefix is a string prefix), and their audit
# records. Services granted to $user.NAME$ follow what this token writes: hold it as such.
# key_prefix "befw/$alias$/$user." {
#   policy = "write"
# }
# key_prefix "befw-audit/$alias$/$user." {
#   policy = "write"
# }

# The observe action (default for the `observed` event): who tried a service in mode observe
# without a grant (README, "Trap ports and observe mode"). No agent reads it; the CLI's
# `client add --from-observed` does, so hold this as a suggestion list, not as grants.
key_prefix "befw-observed/" {
  policy = "write"
}

# The reactor's own state: offence records, VyOS address-group records (stateKvPrefix).
key_prefix "befw-reactor/" {
  policy = "write"
}

# The protected list the nodes publish (each befw agent writes befw-protect/<dc>/<node>).
key_prefix "befw-protect/" {
  policy = "read"
}

# GET /v1/agent/self (the local datacenter) and /v1/agent/members (?wan=1): every Consul agent
# and server is protected from bans. Members the token cannot read are left out of the answer,
# and so would not be protected: keep this unnarrowed.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
