# The anonymous token (requests without a token), for read-only dashboards: Consul 1.4+ ACL system.
#   consul acl policy create -name befw-anonymous -rules @anonymous.hcl
#   consul acl token update -id 00000000-0000-0000-0000-000000000002 -policy-name befw-anonymous -merge-policies
# Everyone who reaches Consul's HTTP API can then read every grant, alias and emergency deny.
# If that is too much, give dashboards their own token with this policy instead.

key_prefix "befw/" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
