# Security engineers and on-call staff using `befw client|alias|allow|deny|purge-expired`:
# Consul 1.4+ ACL system.
#   consul acl policy create -name befw-engineer -rules @engineer.hcl

# Grant and revoke: write the befw/ tree (and read it: write includes read).
key_prefix "befw/" {
  policy = "write"
}

# The audit trail beside each entry (who, why, when, from where; README "Audit trail"): written
# in the same transaction as the entry, so without it every grant fails (audit=false in the
# config writes entries without records).
key_prefix "befw-audit/" {
  policy = "write"
}

# `befw observed` reads what the reactor recorded of observe-mode services; `--purge` deletes
# expired records (read is enough without it).
key_prefix "befw-observed/" {
  policy = "write"
}

# `befw doctor`, `befw service ls`, `befw show` and `befw plan` read the agent, its node and its
# services, like the agent does.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}

# Operators who also run `befw service register|deregister` on nodes need service write on
# those names, e.g.:
# service "web" {
#   policy = "write"
# }
