# The anonymous token, for read-only dashboards: legacy ACL system. In the legacy system its
# rules are set on the token with ID "anonymous":
#   curl -X PUT -H "X-Consul-Token: $MGMT" --data @anon.json http://127.0.0.1:8500/v1/acl/update
#   with anon.json = {"ID": "anonymous", "Type": "client", "Rules": "<this file>"}
# Everyone who reaches Consul's HTTP API can then read every grant, alias and emergency deny.

key "befw/" {
  policy = "read"
}
node "" {
  policy = "read"
}
service "" {
  policy = "read"
}
