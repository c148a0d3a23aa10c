# befw agent on a node, per node (or per group of identical nodes): Consul 1.4+ ACL system.
# The agent registers the services of its service files (/etc/befw.service.d/*.json) with the
# local Consul agent and deregisters them when the file goes, which takes service write on each
# of those names. Exact names (`service`), one block per service file; not `service_prefix`,
# which would let the node register (and so hijack) any service.
#   consul acl policy create -name befw-agent-web-01 -rules @agent-node-services.hcl
service "web" {
  policy = "write"
}

# The node's protected networks (management networks and protect=), published for the syslog
# reactor so it never bans them (`befw-protect/<dc>/<node>`). One exact key per node: a node must
# not be able to protect addresses in another node's name. Without it the agent logs
# protect-publish-failed once and goes on enforcing.
key "befw-protect/dc1/web-01" {
  policy = "write"
}
