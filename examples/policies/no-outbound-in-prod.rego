# Functions in namespace `prod` may not reach the network: no allowed outbound hosts.
package kindling.admission

deny contains msg if {
	input.function.namespace == "prod"
	count(object.get(input.function.config, "allowed_outbound_hosts", [])) > 0
	msg := sprintf("function %q in namespace prod may not allow outbound hosts (it allows %v)", [input.function.name, input.function.config.allowed_outbound_hosts])
}
