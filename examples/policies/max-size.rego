# Only modules under 10 MiB are deployed.
package kindling.admission

max_bytes := 10485760

deny contains msg if {
	input.function.size >= max_bytes
	msg := sprintf("function %q is %d bytes; modules must be under %d bytes (10 MiB)", [input.function.name, input.function.size, max_bytes])
}
