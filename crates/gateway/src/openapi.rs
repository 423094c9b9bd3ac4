//! The OpenAPI 3 description of every route the node answers, served at `/v1/openapi.json`.
//! A test walks it against the real router so that the document and the routes cannot drift.

use kindling_host::Capabilities;
use serde_json::{Value, json};

/// The OpenAPI 3.0 document; the function configuration's fields come from the capabilities.
pub fn document(capabilities: &Capabilities) -> Value {
    let mut config_fields = serde_json::Map::new();
    for field in capabilities.fields() {
        config_fields.insert(field.name.to_string(), field.schema);
    }
    let name = json!({
        "name": "name", "in": "path", "required": true,
        "description": "Function name: 1-63 lowercase letters, digits and `-`",
        "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }
    });
    let namespace = json!({
        "name": "namespace", "in": "path", "required": true,
        "description": "The namespace the store belongs to",
        "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }
    });
    let label = json!({
        "name": "label", "in": "path", "required": true,
        "description": "The store's label",
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$" }
    });
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        })
    };
    let ok_json = |description: &str, schema: Value| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema } }
        })
    };
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Kindling",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Serverless WebAssembly functions: the admin API of a Kindling node, \
                            and the invocation routes."
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness: the process answers",
                "responses": { "200": { "description": "alive" } }
            }},
            "/readyz": { "get": {
                "summary": "Readiness: all deployed functions are loaded",
                "responses": {
                    "200": { "description": "ready" },
                    "503": { "description": "still loading functions" }
                }
            }},
            "/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "the OpenAPI document" } }
            }},
            "/v1/functions": { "get": {
                "summary": "List functions",
                "responses": {
                    "200": ok_json("all functions", json!({
                        "type": "object",
                        "properties": { "functions": {
                            "type": "array", "items": { "$ref": "#/components/schemas/Function" }
                        }}
                    }))
                }
            }},
            "/v1/functions/{name}": {
                "parameters": [name],
                "get": {
                    "summary": "Inspect a function",
                    "responses": {
                        "200": ok_json("the function", json!({ "$ref": "#/components/schemas/Function" })),
                        "404": error("no such function")
                    }
                },
                "delete": {
                    "summary": "Delete a function and all its versions",
                    "responses": {
                        "204": { "description": "deleted" },
                        "404": error("no such function")
                    }
                }
            },
            "/v1/functions/{name}/versions": {
                "parameters": [name],
                "get": {
                    "summary": "List a function's versions, newest first",
                    "responses": {
                        "200": ok_json("the versions", json!({
                            "type": "object",
                            "properties": { "versions": {
                                "type": "array", "items": { "$ref": "#/components/schemas/Version" }
                            }}
                        })),
                        "404": error("no such function")
                    }
                },
                "post": {
                    "summary": "Deploy a new version and make it active",
                    "description": "The body is the WebAssembly binary itself, or multipart/form-data \
                                    with a `module` part (the binary) and an optional `config` part \
                                    (JSON). The kind (wasi:http component or WAGI module) is detected \
                                    from the binary. On any error nothing changes and the previous \
                                    version keeps serving.",
                    "requestBody": { "required": true, "content": {
                        "application/wasm": { "schema": { "type": "string", "format": "binary" } },
                        "multipart/form-data": { "schema": {
                            "type": "object",
                            "required": ["module"],
                            "properties": {
                                "module": { "type": "string", "format": "binary" },
                                "config": { "$ref": "#/components/schemas/Config" }
                            }
                        }}
                    }},
                    "responses": {
                        "201": ok_json("deployed", json!({ "$ref": "#/components/schemas/Deploy" })),
                        "200": ok_json("the same module and config were already active",
                                       json!({ "$ref": "#/components/schemas/Deploy" })),
                        "400": error("not WebAssembly, wrong kind, bad name or bad config"),
                        "408": error("the upload did not arrive within the upload timeout"),
                        "413": error("the module is larger than the server accepts"),
                        "507": error("the node's disk is full; nothing was changed")
                    }
                }
            },
            "/v1/functions/{name}/rollback": {
                "parameters": [name],
                "post": {
                    "summary": "Activate an earlier version",
                    "requestBody": { "required": false, "content": { "application/json": { "schema": {
                        "type": "object", "additionalProperties": false,
                        "properties": { "version": {
                            "type": "integer", "minimum": 1,
                            "description": "Version to activate; the one before the active one when left out"
                        }}
                    }}}},
                    "responses": {
                        "200": ok_json("the function after the rollback",
                                       json!({ "$ref": "#/components/schemas/Function" })),
                        "400": error("the body is neither empty nor {\"version\": N}, or that version cannot run here"),
                        "404": error("no such function or version"),
                        "409": error("no earlier version")
                    }
                }
            },
            "/v1/functions/{name}/logs": {
                "parameters": [name],
                "get": {
                    "summary": "The function's recent guest output (stdout of components, stderr of all), oldest first",
                    "parameters": [
                        { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 },
                          "description": "Only lines numbered at least this (the `next` of the previous page)" },
                        { "name": "since_ms", "in": "query", "schema": { "type": "integer", "minimum": 0 },
                          "description": "Only lines captured at or after this time, ms since the Unix epoch" },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 },
                          "description": "At most this many lines, the newest (default 1000)" },
                        { "name": "wait", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 60 },
                          "description": "Seconds to wait for a new line before answering (long poll)" }
                    ],
                    "responses": {
                        "200": ok_json("lines, where to resume, and how many the bounded store dropped", json!({
                            "type": "object",
                            "properties": {
                                "function": { "type": "string" },
                                "next": { "type": "integer" },
                                "dropped": { "type": "integer" },
                                "lines": { "type": "array", "items": { "type": "object", "properties": {
                                    "seq": { "type": "integer" },
                                    "at_ms": { "type": "integer" },
                                    "request_id": { "type": "string" },
                                    "stream": { "type": "string", "enum": ["stdout", "stderr"] },
                                    "text": { "type": "string" }
                                }}}
                            }
                        })),
                        "400": error("a bad query parameter"),
                        "404": error("no such function")
                    }
                }
            },
            "/v1/kv": { "get": {
                "summary": "The key-value stores opened so far, with their sizes",
                "responses": {
                    "200": ok_json("the stores", json!({ "type": "array", "items": { "$ref": "#/components/schemas/KvStore" } })),
                    "404": error("this node has no key-value capability")
                }
            }},
            "/v1/kv/{namespace}/{label}": {
                "parameters": [namespace, label],
                "get": {
                    "summary": "A page of a store's keys, in order",
                    "parameters": [
                        { "name": "after", "in": "query", "schema": { "type": "string" },
                          "description": "Only keys after this one (the `next` of the previous page)" },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 },
                          "description": "At most this many keys (default 1000)" }
                    ],
                    "responses": {
                        "200": ok_json("keys and where to resume", json!({
                            "type": "object", "required": ["keys"],
                            "properties": {
                                "keys": { "type": "array", "items": { "type": "string" } },
                                "next": { "type": "string" }
                            }
                        })),
                        "400": error("a bad namespace or query"),
                        "404": error("no store with this label")
                    }
                }
            },
            "/v1/kv/{namespace}/{label}/{key}": {
                "parameters": [namespace, label,
                    { "name": "key", "in": "path", "required": true, "schema": { "type": "string" } }],
                "get": {
                    "summary": "A key's value, as bytes",
                    "responses": {
                        "200": { "description": "the value", "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                        "400": error("a bad namespace"),
                        "404": error("no such store or key")
                    }
                },
                "put": {
                    "summary": "Set a key to the body",
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": {
                        "204": { "description": "set" },
                        "400": error("a bad namespace"),
                        "404": error("no such store"),
                        "409": error("an append-only store holds the key with another value"),
                        "507": error("the store's limits do not allow it")
                    }
                },
                "delete": {
                    "summary": "Remove a key (an absent key is fine)",
                    "responses": {
                        "204": { "description": "removed" },
                        "400": error("a bad namespace"),
                        "404": error("no such store"),
                        "409": error("the store is append-only")
                    }
                }
            },
            "/v1/sqlite": { "get": {
                "summary": "The SQLite databases opened so far, with their sizes",
                "responses": {
                    "200": ok_json("the databases", json!({ "type": "array", "items": { "$ref": "#/components/schemas/SqliteDatabase" } })),
                    "404": error("this node has no SQLite capability")
                }
            }},
            "/v1/sqlite/{namespace}/{label}": {
                "parameters": [namespace, label],
                "post": {
                    "summary": "Run one statement on a namespace's database, as its functions granted the label would",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "additionalProperties": false, "required": ["statement"],
                        "properties": {
                            "statement": { "type": "string" },
                            "parameters": { "type": "array", "items": { "$ref": "#/components/schemas/SqlValue" } }
                        }
                    }}}},
                    "responses": {
                        "200": ok_json("the columns and rows", json!({
                            "type": "object", "required": ["columns", "rows"],
                            "properties": {
                                "columns": { "type": "array", "items": { "type": "string" } },
                                "rows": { "type": "array", "items": { "type": "array", "items": { "$ref": "#/components/schemas/SqlValue" } } }
                            }
                        })),
                        "400": error("a bad namespace, body or statement"),
                        "404": error("no database with this label"),
                        "504": error("the statement ran too long and was interrupted"),
                        "507": error("the database reached its size limit")
                    }
                }
            },
            "/{function}/{path}": {
                "parameters": [
                    { "name": "function", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "path", "in": "path", "required": true,
                      "description": "The rest of the path, passed to the function with the query",
                      "schema": { "type": "string" } }
                ],
                "get": {
                    "summary": "Invoke a function (any method works the same way)",
                    "responses": {
                        "default": { "description": "whatever the function answers" },
                        "404": error("no such function"),
                        "413": error("request body over the function's limit"),
                        "502": error("invalid or oversized function response"),
                        "429": error("the function, its queue or its namespace is at a limit (Retry-After)"),
                        "503": error("the node is overloaded (Retry-After) or the function failed to load"),
                        "504": error("the function did not answer within its deadline")
                    }
                },
                "post": {
                    "summary": "Invoke a function with a body, streamed to it",
                    "responses": {
                        "default": { "description": "whatever the function answers" },
                        "404": error("no such function")
                    }
                }
            }
        },
        "components": { "schemas": {
            "Error": {
                "type": "object", "required": ["error"],
                "properties": { "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" },
                        "request_id": { "type": "string" }
                    }
                }}
            },
            "Limits": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "memory_bytes": { "type": "integer", "minimum": 1 },
                    "timeout_ms": { "type": "integer", "minimum": 1 },
                    "cpu_fuel": { "type": "integer", "minimum": 1 },
                    "max_concurrency": { "type": "integer", "minimum": 1 },
                    "queue_len": { "type": "integer", "minimum": 0 },
                    "queue_timeout_ms": { "type": "integer", "minimum": 0 },
                    "max_request_body_bytes": { "type": "integer", "minimum": 0 },
                    "max_response_body_bytes": { "type": "integer", "minimum": 0 }
                }
            },
            "Config": {
                "type": "object", "additionalProperties": false,
                "properties": config_properties(config_fields, json!({
                    "limits": { "$ref": "#/components/schemas/Limits" },
                    "priority": { "type": "string", "enum": ["critical", "normal", "batch"] },
                    "namespace": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" },
                    "requirements": {
                        "type": "object", "additionalProperties": { "type": "string" },
                        "description": "what the workload needs, such as {\"security\": \"high\", \"startup\": \"ultra-low\"}; dimensions and levels as in `kindling advise`; judged by `kindling advise --function`"
                    },
                    "auth": {
                        "type": "string", "enum": ["public", "token"],
                        "description": "who may call the function: anyone (public, the default) or a token with the invoke scope for its namespace"
                    },
                    "allow_unsupported_imports": {
                        "type": "boolean",
                        "description": "link imports Kindling does not provide to stand-ins that trap when called, instead of refusing the deploy"
                    }
                }), crate::openapi_events::config_fields())
            },
            "SqliteDatabase": {
                "type": "object", "required": ["namespace", "label", "bytes"],
                "properties": {
                    "namespace": { "type": "string" },
                    "label": { "type": "string" },
                    "bytes": { "type": "integer" }
                }
            },
            "SqlValue": {
                "description": "an integer, a real, text, null, or a blob as {\"blob\": \"HEX\"}",
                "oneOf": [
                    { "type": "number" },
                    { "type": "string" },
                    { "type": "null" },
                    { "type": "object", "additionalProperties": false, "required": ["blob"],
                      "properties": { "blob": { "type": "string", "pattern": "^([0-9a-fA-F]{2})*$" } } }
                ]
            },
            "KvStore": {
                "type": "object", "required": ["namespace", "label", "keys", "bytes"],
                "properties": {
                    "namespace": { "type": "string" },
                    "label": { "type": "string" },
                    "keys": { "type": "integer" },
                    "bytes": { "type": "integer" }
                }
            },
            "Stats": {
                "type": "object",
                "properties": {
                    "invocations": { "type": "integer" },
                    "rejected": { "type": "integer" },
                    "cold_starts": { "type": "integer" },
                    "last_cold_start_ms": { "type": "number" },
                    "prewarms": { "type": "integer" },
                    "in_flight": { "type": "integer" },
                    "queued": { "type": "integer" }
                }
            },
            "Autoscale": {
                "type": "object",
                "properties": {
                    "desired": { "type": "integer" },
                    "stable_concurrency": { "type": "number" },
                    "panic_concurrency": { "type": "number" },
                    "panicking": { "type": "boolean" }
                }
            },
            "Version": {
                "type": "object",
                "required": ["function", "version", "sha256", "kind", "size_bytes", "config", "created_at"],
                "properties": {
                    "function": { "type": "string" },
                    "version": { "type": "integer" },
                    "sha256": { "type": "string" },
                    "kind": { "type": "string", "enum": ["wasi-http", "wasi-http-0.3", "wagi"] },
                    "size_bytes": { "type": "integer" },
                    "config": { "$ref": "#/components/schemas/Config" },
                    "created_at": { "type": "string", "format": "date-time" }
                }
            },
            "Load": {
                "type": "object", "required": ["source", "millis"],
                "properties": {
                    "source": { "type": "string", "enum": ["cache", "compiled", "shared"] },
                    "millis": { "type": "number" }
                }
            },
            "Function": {
                "type": "object",
                "required": ["name", "state", "active_version", "version_count", "kind", "sha256",
                             "size_bytes", "config", "created_at", "updated_at", "stats"],
                "properties": {
                    "name": { "type": "string" },
                    "state": { "type": "string", "enum": ["warm", "cold", "failed"] },
                    "active_version": { "type": "integer" },
                    "version_count": { "type": "integer" },
                    "kind": { "type": "string", "enum": ["wasi-http", "wasi-http-0.3", "wagi"] },
                    "sha256": { "type": "string" },
                    "size_bytes": { "type": "integer" },
                    "config": { "$ref": "#/components/schemas/Config" },
                    "created_at": { "type": "string", "format": "date-time" },
                    "updated_at": { "type": "string", "format": "date-time" },
                    "load": { "$ref": "#/components/schemas/Load" },
                    "error": { "type": "string" },
                    "stats": { "$ref": "#/components/schemas/Stats" },
                    "autoscale": { "$ref": "#/components/schemas/Autoscale" },
                    "capabilities": { "type": "array", "items": {
                        "type": "object", "required": ["label", "value"],
                        "properties": { "label": { "type": "string" }, "value": { "type": "string" } }
                    }},
                    "schedules": { "type": "array",
                                   "items": { "$ref": "#/components/schemas/ScheduleStatus" } }
                }
            },
            "Deploy": {
                "type": "object", "required": ["version", "unchanged"],
                "properties": {
                    "version": { "$ref": "#/components/schemas/Version" },
                    "unchanged": { "type": "boolean" },
                    "load": { "$ref": "#/components/schemas/Load" }
                }
            }
        }}
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(crate::openapi_events::paths());
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(crate::openapi_events::schemas());
    }
    crate::openapi_access::secure(&mut doc);
    doc
}

/// The configuration's own fields with every capability's fields added.
fn config_properties(
    capability_fields: serde_json::Map<String, Value>,
    own: Value,
    delivery: Value,
) -> Value {
    let mut properties = match own {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if let Value::Object(delivery) = delivery {
        properties.extend(delivery);
    }
    properties.extend(capability_fields);
    Value::Object(properties)
}
