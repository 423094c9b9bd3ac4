//! The invocation queue's part of the OpenAPI document: queueing an invocation, reading,
//! retrying and purging invocations, and the schemas of an invocation, a schedule and a
//! retry policy.

use serde_json::{Map, Value, json};

use crate::openapi_access::{error, ok_json};

/// The queue's routes.
pub(crate) fn paths() -> Map<String, Value> {
    let id = json!({
        "name": "id", "in": "path", "required": true,
        "description": "The invocation's id (`inv_` and 32 hex digits)",
        "schema": { "type": "string", "minLength": 1, "maxLength": 64 }
    });
    let name = json!({
        "name": "name", "in": "path", "required": true,
        "description": "Function name: 1-63 lowercase letters, digits and `-`",
        "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }
    });
    let function = json!({
        "name": "function", "in": "query", "required": false,
        "description": "Of this function only", "schema": { "type": "string" }
    });
    let state = json!({
        "name": "state", "in": "query", "required": false,
        "description": "In this state only",
        "schema": { "type": "string", "enum": ["queued", "running", "succeeded", "dead"] }
    });
    let finished_state = json!({
        "name": "state", "in": "query", "required": false,
        "description": "Of these finished ones only (queued and running ones cannot be purged: 409)",
        "schema": { "type": "string", "enum": ["queued", "running", "succeeded", "dead"] }
    });
    let limit = json!({
        "name": "limit", "in": "query", "required": false,
        "description": "At most this many (default 100, at most 1000)",
        "schema": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u64 }
    });
    let accepted = json!({
        "description": "queued: on disk before this answer; `Location` points at the invocation",
        "headers": { "Location": { "schema": { "type": "string" } } },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } }
    });
    let paths = json!({
        "/v1/functions/{name}/invocations": {
            "post": {
                "summary": "Queue an invocation of the function (needs the invoke scope); the body is the function's request body",
                "description": "The same as `Prefer: respond-async` on the function's own route. `Idempotency-Key` deduplicates within the node's window; `X-Callback-Url` receives the result.",
                "parameters": [
                    name,
                    { "name": "method", "in": "query", "required": false,
                      "description": "The method the function sees (default POST)",
                      "schema": { "type": "string", "pattern": "^[A-Za-z]{1,16}$" } },
                    { "name": "path", "in": "query", "required": false,
                      "description": "The path the function sees (default /)",
                      "schema": { "type": "string", "pattern": "^/" } },
                    { "name": "Idempotency-Key", "in": "header", "required": false,
                      "schema": { "type": "string", "minLength": 1, "maxLength": 255,
                                  "pattern": "^[!-~]+$" } },
                ],
                "requestBody": { "required": false, "content": {
                    "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
                } },
                "responses": {
                    "202": accepted,
                    "400": error("a query parameter or header is not valid"),
                    "404": error("no function of that name"),
                    "413": error("the body is larger than the node's limit for asynchronous invocations"),
                    "429": error("the function's namespace has its share of the queue waiting"),
                    "503": error("the queue is full")
                }
            }
        },
        "/v1/invocations": {
            "get": {
                "summary": "List invocations, newest first (a namespaced token sees its namespace's)",
                "parameters": [function.clone(), state, limit],
                "responses": {
                    "200": ok_json("the invocations", json!({
                        "type": "object", "required": ["invocations"],
                        "properties": { "invocations": {
                            "type": "array", "items": { "$ref": "#/components/schemas/Invocation" } } }
                    })),
                    "400": error("a query parameter is not valid")
                }
            },
            "delete": {
                "summary": "Purge finished invocations (succeeded and dead) the query selects",
                "parameters": [function, finished_state],
                "responses": {
                    "200": ok_json("how many were deleted", json!({
                        "type": "object", "required": ["purged"],
                        "properties": { "purged": { "type": "integer", "minimum": 0 } }
                    })),
                    "400": error("a query parameter is not valid"),
                    "409": error("queued or running invocations cannot be purged")
                }
            }
        },
        "/v1/invocations/{id}": {
            "get": {
                "summary": "One invocation: its state, every attempt, the last response, the callback",
                "parameters": [id.clone()],
                "responses": {
                    "200": ok_json("the invocation", json!({ "$ref": "#/components/schemas/Invocation" })),
                    "404": error("no invocation with that id in a namespace the token sees")
                }
            },
            "delete": {
                "summary": "Delete one finished invocation, or cancel a queued one",
                "parameters": [id.clone()],
                "responses": {
                    "204": { "description": "deleted" },
                    "404": error("no invocation with that id in a namespace the token sees"),
                    "409": error("an attempt is running")
                }
            }
        },
        "/v1/invocations/{id}/retry": {
            "post": {
                "summary": "Queue a dead (or succeeded) invocation again with a fresh retry budget",
                "parameters": [id],
                "responses": {
                    "200": ok_json("the invocation, queued", json!({ "$ref": "#/components/schemas/Invocation" })),
                    "404": error("no invocation with that id in a namespace the token sees"),
                    "409": error("it is queued or running")
                }
            }
        }
    });
    match paths {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The queue's schemas.
pub(crate) fn schemas() -> Map<String, Value> {
    let schemas = json!({
        "Accepted": {
            "type": "object", "required": ["id", "function", "location", "duplicate"],
            "properties": {
                "id": { "type": "string" },
                "function": { "type": "string" },
                "location": { "type": "string" },
                "duplicate": { "type": "boolean",
                               "description": "the idempotency key found an earlier invocation, whose id this is" }
            }
        },
        "Invocation": {
            "type": "object",
            "required": ["id", "function", "namespace", "source", "state", "attempts", "method",
                         "path", "body_bytes", "created_at", "updated_at"],
            "properties": {
                "id": { "type": "string" },
                "function": { "type": "string" },
                "namespace": { "type": "string" },
                "source": { "type": "string", "enum": ["http", "schedule", "nats", "jetstream", "redis"] },
                "state": { "type": "string", "enum": ["queued", "running", "succeeded", "dead"] },
                "attempts": { "type": "integer", "minimum": 0 },
                "method": { "type": "string" },
                "path": { "type": "string" },
                "body_bytes": { "type": "integer", "minimum": 0 },
                "idempotency_key": { "type": "string" },
                "created_at": { "type": "string", "format": "date-time" },
                "updated_at": { "type": "string", "format": "date-time" },
                "next_attempt_at": { "type": "string", "format": "date-time" },
                "finished_at": { "type": "string", "format": "date-time" },
                "reason": { "type": "string" },
                "response": {
                    "type": "object", "required": ["status", "headers"],
                    "properties": {
                        "status": { "type": "integer" },
                        "headers": { "type": "array", "items": {
                            "type": "array", "items": { "type": "string" }, "minItems": 2, "maxItems": 2 } },
                        "body": { "type": "string" },
                        "body_base64": { "type": "string" },
                        "truncated": { "type": "boolean" }
                    }
                },
                "callback": {
                    "type": "object", "required": ["url", "state", "attempts"],
                    "properties": {
                        "url": { "type": "string" },
                        "state": { "type": "string", "enum": ["waiting", "pending", "delivered", "failed"] },
                        "attempts": { "type": "integer", "minimum": 0 },
                        "error": { "type": "string" }
                    }
                },
                "history": { "type": "array", "items": {
                    "type": "object", "required": ["number", "started_at"],
                    "properties": {
                        "number": { "type": "integer", "minimum": 1 },
                        "started_at": { "type": "string", "format": "date-time" },
                        "duration_ms": { "type": "integer", "minimum": 0 },
                        "status": { "type": "integer" },
                        "error": { "type": "string" }
                    }
                }}
            }
        },
        "Retry": {
            "type": "object", "additionalProperties": false,
            "required": ["retries", "backoff_min_ms", "backoff_max_ms"],
            "description": "retries of a failed asynchronous invocation: the n-th waits between half and all of min x 2^(n-1), capped at max",
            "properties": {
                "retries": { "type": "integer", "minimum": 0, "maximum": 100 },
                "backoff_min_ms": { "type": "integer", "minimum": 1, "maximum": 86_400_000 },
                "backoff_max_ms": { "type": "integer", "minimum": 1, "maximum": 86_400_000 }
            }
        },
        "ScheduleConfig": {
            "type": "object", "additionalProperties": false, "required": ["cron"],
            "properties": {
                "cron": { "type": "string",
                          "description": "five fields, or six with seconds first: `*/5 * * * *`" },
                "timezone": { "type": "string", "description": "an IANA time zone (default UTC)" },
                "missed": { "type": "string", "enum": ["skip", "run-once"],
                            "description": "what to do with firings missed while the node was down" },
                "path": { "type": "string", "pattern": "^/" }
            }
        },
        "Trigger": {
            "type": "object", "additionalProperties": false, "required": ["kind", "source"],
            "properties": {
                "kind": { "type": "string", "enum": ["nats", "jetstream", "redis"] },
                "source": { "type": "string", "pattern": "^[A-Za-z0-9._*>:-]{1,255}$",
                            "description": "the subject (nats) or the stream (jetstream, redis)" },
                "group": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,255}$",
                           "description": "queue group, durable consumer or consumer group (default kindling-{function})" },
                "subject": { "type": "string", "description": "only these subjects of the stream (jetstream)" },
                "reply": { "type": "string", "description": "where the response is published (jetstream: a subject, redis: a stream)" },
                "path": { "type": "string", "pattern": "^/" }
            }
        },
        "ScheduleStatus": {
            "type": "object", "required": ["cron", "timezone", "missed", "path"],
            "properties": {
                "cron": { "type": "string" },
                "timezone": { "type": "string" },
                "missed": { "type": "string", "enum": ["skip", "run-once"] },
                "path": { "type": "string" },
                "last_run": { "type": "string", "format": "date-time" },
                "next_run": { "type": "string", "format": "date-time" }
            }
        }
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The configuration fields of delivery, for the `Config` schema.
pub(crate) fn config_fields() -> Value {
    json!({
        "retry": { "$ref": "#/components/schemas/Retry" },
        "schedules": { "type": "array", "maxItems": 16,
                       "items": { "$ref": "#/components/schemas/ScheduleConfig" } },
        "triggers": { "type": "array", "maxItems": 16,
                      "items": { "$ref": "#/components/schemas/Trigger" } }
    })
}
