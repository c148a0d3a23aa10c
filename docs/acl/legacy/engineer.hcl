# Security engineers and on-call staff: legacy ACL system (prefix rules, see agent-node.hcl).
#   {"Name": "befw engineer alice", "Type": "client", "Rules": "<this file>"}

key "befw/" {
  policy = "write"
}
# The audit trail beside each entry, written with it in one transaction.
key "befw-audit/" {
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
