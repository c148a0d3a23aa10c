# Security engineers and on-call staff: legacy ACL system (prefix rules, see agent-node.hcl).
#   {"Name": "befw engineer alice", "Type": "client", "Rules": "<this file>"}

key "befw/" {
  policy = "write"
}
agent "" {
  policy = "read"
}
node "" {
  policy = "read"
}
service "" {
  policy = "read"
}
