# befw agent on a node, per node (or per group of identical nodes): Consul 1.4+ ACL system.
# The agent registers the services of its service files (/etc/befw.service.d/*.json) with the
# local Consul agent and deregisters them when the file goes, which takes service write on each
# of those names. Exact names (`service`), one block per service file; not `service_prefix`,
# which would let the node register (and so hijack) any service.
#   consul acl policy create -name befw-agent-web-01 -rules @agent-node-services.hcl
service "web" {
  policy = "write"
}
