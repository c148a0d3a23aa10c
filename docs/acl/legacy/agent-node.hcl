# befw agent on a node: legacy ACL system (Consul 1.3 and before; Consul 1.4-1.10 still accept
# legacy tokens). Legacy rules always match by prefix: `key "befw/"` covers every key under
# befw/, and `service "web"` also covers "web2" and "web-admin".
#   curl -X PUT -H "X-Consul-Token: $MGMT" --data @token.json http://127.0.0.1:8500/v1/acl/create
#   with token.json = {"Name": "befw agent web-01", "Type": "client", "Rules": "<this file>"}

# Grants, aliases and static sets: read only.
key "befw/" {
  policy = "read"
}

# agent/self (node name and datacenter), the node's catalog entry, the services on the node.
agent "" {
  policy = "read"
}
node "" {
  policy = "read"
}
service "" {
  policy = "read"
}

# Per node: the services of its service files, which the agent registers and deregisters.
# The more specific rule wins over service "" above.
service "web" {
  policy = "write"
}

# Per node: its protected networks, published for the syslog reactor (exact key per node).
key "befw-protect/dc1/web-01" {
  policy = "write"
}
