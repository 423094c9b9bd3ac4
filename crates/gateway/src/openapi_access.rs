//! The access layer's part of the OpenAPI document: the token, namespace, policy and audit
//! routes, their schemas, and the bearer security scheme with the 401 and 403 answers every
//! admin route can give.

use serde_json::{Map, Value, json};

/// A documented error answer.
pub(crate) fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// A documented JSON answer.
pub(crate) fn ok_json(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } }
    })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// The access routes.
pub(crate) fn paths() -> Map<String, Value> {
    let token_id = json!({
        "name": "id", "in": "path", "required": true,
        "description": "The token's id, or its name when that is unique among live tokens",
        "schema": { "type": "string", "minLength": 1, "maxLength": 64 }
    });
    let namespace = json!({
        "name": "name", "in": "path", "required": true,
        "description": "Namespace name: 1-63 lowercase letters, digits and `-`",
        "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }
    });
    let policy = json!({
        "name": "name", "in": "path", "required": true,
        "description": "Policy name: 1-63 lowercase letters, digits and `-`",
        "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }
    });
    let paths = json!({
        "/v1/tokens": {
            "get": {
                "summary": "List tokens (an admin sees its namespace's, a node-wide admin all)",
                "responses": { "200": ok_json("the tokens, without secrets", json!({
                    "type": "object", "properties": { "tokens": {
                        "type": "array", "items": { "$ref": "#/components/schemas/Token" } } }
                })) }
            },
            "post": {
                "summary": "Make a token; its secret is in this answer only",
                "requestBody": body(json!({ "$ref": "#/components/schemas/NewToken" })),
                "responses": {
                    "201": ok_json("the token", json!({
                        "type": "object", "required": ["token", "record"],
                        "properties": {
                            "token": { "type": "string" },
                            "record": { "$ref": "#/components/schemas/Token" }
                        }
                    })),
                    "400": error("invalid name, scopes or namespace")
                }
            }
        },
        "/v1/tokens/{id}": {
            "parameters": [token_id],
            "delete": {
                "summary": "Revoke a token; it stops working at once",
                "responses": {
                    "200": ok_json("the revoked token", json!({ "$ref": "#/components/schemas/Token" })),
                    "400": error("the name is ambiguous, or this is the last node-wide admin token"),
                    "404": error("no such token")
                }
            }
        },
        "/v1/namespaces": {
            "get": {
                "summary": "List namespaces, their quotas and what they use",
                "responses": { "200": ok_json("the namespaces", json!({
                    "type": "object", "properties": { "namespaces": {
                        "type": "array", "items": { "$ref": "#/components/schemas/Namespace" } } }
                })) }
            },
            "post": {
                "summary": "Create a namespace (node-wide admin)",
                "requestBody": body(json!({
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string" },
                        "quotas": { "$ref": "#/components/schemas/Quotas" }
                    }
                })),
                "responses": {
                    "201": ok_json("the namespace", json!({ "$ref": "#/components/schemas/Namespace" })),
                    "400": error("invalid name or quotas"),
                    "409": error("the namespace exists")
                }
            }
        },
        "/v1/namespaces/{name}": {
            "parameters": [namespace],
            "put": {
                "summary": "Set a namespace's quotas, creating it if needed (node-wide admin)",
                "requestBody": body(json!({ "$ref": "#/components/schemas/Quotas" })),
                "responses": {
                    "200": ok_json("the namespace", json!({ "$ref": "#/components/schemas/Namespace" })),
                    "400": error("invalid quotas")
                }
            }
        },
        "/v1/policies": {
            "get": {
                "summary": "List the active Rego policies",
                "responses": { "200": ok_json("the policies", json!({
                    "type": "object", "properties": { "policies": {
                        "type": "array", "items": { "$ref": "#/components/schemas/Policy" } } }
                })) }
            }
        },
        "/v1/policies/{name}": {
            "parameters": [policy],
            "put": {
                "summary": "Store Rego source as the policy's next version (node-wide admin)",
                "requestBody": { "required": true,
                                 "content": { "text/plain": { "schema": { "type": "string" } } } },
                "responses": {
                    "200": ok_json("the stored version", json!({ "$ref": "#/components/schemas/Policy" })),
                    "400": error("the policy does not compile (with its line and column)")
                }
            },
            "delete": {
                "summary": "Deactivate a policy (node-wide admin)",
                "responses": {
                    "204": { "description": "deactivated" },
                    "400": error("the remaining policies would not compile"),
                    "404": error("no such policy")
                }
            }
        },
        "/v1/audit": {
            "get": {
                "summary": "The audit log of admin actions, oldest first",
                "parameters": [
                    { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 0 } }
                ],
                "responses": {
                    "200": ok_json("entries", json!({
                        "type": "object", "required": ["entries", "next"],
                        "properties": {
                            "entries": { "type": "array",
                                         "items": { "$ref": "#/components/schemas/AuditEntry" } },
                            "next": { "type": "integer" }
                        }
                    })),
                    "400": error("invalid query")
                }
            }
        }
    });
    match paths {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The access schemas.
pub(crate) fn schemas() -> Map<String, Value> {
    let scopes = json!({ "type": "string", "enum": ["read", "deploy", "admin", "invoke"] });
    let schemas = json!({
        "Token": {
            "type": "object", "required": ["id", "name", "scopes", "created_at"],
            "properties": {
                "id": { "type": "string" },
                "name": { "type": "string" },
                "namespace": { "type": "string" },
                "scopes": { "type": "array", "items": scopes.clone() },
                "created_at": { "type": "string" },
                "expires_at": { "type": "string" },
                "revoked_at": { "type": "string" },
                "created_by": { "type": "string" }
            }
        },
        "NewToken": {
            "type": "object", "required": ["name", "scopes"], "additionalProperties": false,
            "properties": {
                "name": { "type": "string" },
                "namespace": { "type": "string", "nullable": true },
                "scopes": { "type": "array", "items": scopes },
                "expires_in_seconds": { "type": "integer", "minimum": 0, "maximum": 315_360_000,
                                        "nullable": true }
            }
        },
        "Quotas": {
            "type": "object", "additionalProperties": false,
            "description": "each quota absent or null is unlimited",
            "properties": {
                "functions": { "type": "integer", "minimum": 0, "nullable": true },
                "versions_kept": { "type": "integer", "minimum": 0, "nullable": true },
                "memory_bytes": { "type": "integer", "minimum": 0, "nullable": true },
                "max_in_flight": { "type": "integer", "minimum": 0, "nullable": true },
                "requests_per_second": { "type": "number", "exclusiveMinimum": true, "minimum": 0,
                                         "nullable": true },
                "burst": { "type": "integer", "minimum": 0, "nullable": true }
            }
        },
        "Namespace": {
            "type": "object", "required": ["name", "quotas", "functions", "memory_bytes", "in_flight"],
            "properties": {
                "name": { "type": "string" },
                "quotas": { "$ref": "#/components/schemas/Quotas" },
                "functions": { "type": "integer" },
                "memory_bytes": { "type": "integer" },
                "in_flight": { "type": "integer" }
            }
        },
        "Policy": {
            "type": "object", "required": ["name", "version", "rego", "sha256", "created_at"],
            "properties": {
                "name": { "type": "string" },
                "version": { "type": "integer" },
                "rego": { "type": "string" },
                "sha256": { "type": "string" },
                "created_at": { "type": "string" }
            }
        },
        "AuditEntry": {
            "type": "object",
            "required": ["seq", "at", "action", "status", "result", "request_id"],
            "properties": {
                "seq": { "type": "integer" },
                "at": { "type": "string" },
                "token_id": { "type": "string" },
                "token_name": { "type": "string" },
                "namespace": { "type": "string" },
                "action": { "type": "string" },
                "status": { "type": "integer" },
                "result": { "type": "string", "enum": ["ok", "denied", "failed"] },
                "request_id": { "type": "string" },
                "source": { "type": "string" }
            }
        }
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Adds the access routes and schemas, the bearer scheme, and the 401 and 403 answers to
/// every admin route; the node's own public routes need no token.
pub(crate) fn secure(doc: &mut Value) {
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(self::paths());
        for (path, item) in paths.iter_mut() {
            let public = !path.starts_with("/v1/") || path == "/v1/openapi.json";
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if method == "parameters" {
                    continue;
                }
                if public {
                    operation["security"] = json!([]);
                    continue;
                }
                if let Some(responses) = operation["responses"].as_object_mut() {
                    responses
                        .entry("401")
                        .or_insert_with(|| error("no token, or one this node does not accept"));
                    responses.entry("403").or_insert_with(|| {
                        error("the token lacks the scope, or the namespace is not its own")
                    });
                }
            }
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(self::schemas());
    }
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer",
                    "description": "A Kindling API token (kdl_...)" }
    });
    doc["security"] = json!([{ "bearer": [] }]);
}
