# Per-request authorization, Envoy ext_authz style: reads are open; writes need a token with
# the invoke scope, except under /public/.
package kindling.authz

default allow := false

allow if input.method in {"GET", "HEAD", "OPTIONS"}

allow if startswith(input.path, "/public/")

allow if "invoke" in input.token.scopes

allow if "admin" in input.token.scopes
