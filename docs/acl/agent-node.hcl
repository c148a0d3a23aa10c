# befw agent on a node: Consul 1.4+ ACL system (policies and tokens).
# Give each node's befw token this policy and the node's own agent-node-services policy.
#   consul acl policy create -name befw-agent -rules @agent-node.hcl

# Grants, aliases and static sets: read only. A node token that could write here would let one
# compromised node open every node's firewall (`befw doctor` warns when it can).
key_prefix "befw/" {
  policy = "read"
}

# GET /v1/agent/self: the agent learns its node name and datacenter from its local Consul
# agent. To narrow it, replace "" with the node's name and use `agent` instead of `agent_prefix`.
agent_prefix "" {
  policy = "read"
}

# GET /v1/catalog/node/<node>: the agent watches its node's catalog entry to learn when services
# change (as above, may be narrowed to `node "<name>"`).
node_prefix "" {
  policy = "read"
}

# GET /v1/agent/services: which services run here and which ports to guard. Services the token
# cannot read are silently left out of the answer, so they would not be protected.
service_prefix "" {
  policy = "read"
}
