//! Operations routes (SPEC §4): `GET /metrics` (Prometheus text format) and
//! `GET /openapi.json` (an OpenAPI 3.0 description of the whole HTTP API).
//!
//! The OpenAPI document is hand-written JSON, filled in with this node's
//! settings (N bounds the `r`/`w` parameters, R and W are their defaults,
//! and bearer auth is required only when a `client_token` is configured).
//! `scripts/schemathesis.sh` fuzzes a live cluster against it.

use std::collections::BTreeMap;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use dynamo_actors::failure_detector::LivenessView;
use dynamo_actors::stats::NodeStats;
use dynamo_core::config::MAX_KEY_BYTES;
use dynamo_core::membership::{Member, MemberState};
use dynamo_core::Config;
use serde_json::{json, Value};

use crate::api::AppState;
use crate::error::ApiError;
use crate::metrics::{anti_entropy_counts, render, NodeFigures, EXPOSITION_CONTENT_TYPE};

/// Register `/metrics` and `/openapi.json`.
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(req.method().to_string()).error_response()
}

/// The status word of member `m` as node `me` sees it (as `/status` says).
pub fn member_status(m: &Member, me: &str, liveness: &LivenessView) -> &'static str {
    match m.state {
        MemberState::Leaving => "leaving",
        _ if m.node_id == me => "up",
        _ => liveness.of(&m.node_id).as_str(),
    }
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let node = &state.node;
    let replica = node.replica.clone();
    // Storage statistics read RocksDB: off the executor thread.
    let storage = web::block(move || replica.stats())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let cfg = &node.config;
    let cluster = node.cluster.get();
    let liveness = node.liveness.get();
    let mut members: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Active or leaving: members removed for good are not counted.
    for m in cluster
        .members
        .values()
        .filter(|m| matches!(m.state, MemberState::Active | MemberState::Leaving))
    {
        *members.entry(member_status(m, &cfg.node_id, &liveness)).or_default() += 1;
    }
    let ring = &cluster.ring;
    let stats = &node.stats;
    let figures = NodeFigures {
        node_id: cfg.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: node.started.elapsed().as_secs(),
        n: cfg.n,
        r: cfg.r,
        w: cfg.w,
        partitions: ring.partitions(),
        ring_version: ring.version,
        members,
        partitions_owned: ring.owned_counts(),
        partitions_replicated: ring.replicated_counts(cfg.n),
        storage_keys: storage.keys,
        storage_bytes: storage.bytes,
        hints_pending: NodeStats::get(&stats.hints_pending),
        hints_delivered: NodeStats::get(&stats.hints_delivered),
        read_repairs: NodeStats::get(&stats.read_repairs),
        peer_failures: NodeStats::get(&stats.peer_failures),
        sibling_cap_refusals: NodeStats::get(&stats.sibling_cap_refusals),
        forwarded: NodeStats::get(&stats.forwarded),
        anti_entropy: anti_entropy_counts(stats),
    };
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, EXPOSITION_CONTENT_TYPE))
        .body(render(&figures, &state.metrics)))
}

async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(openapi_document(&state.node.config))
}

// ---------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn error_response(description: &str, headers: Value) -> Value {
    json!({
        "description": description,
        "headers": headers,
        "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
    })
}

/// The headers every `/kv` response carries.
fn kv_headers() -> Value {
    json!({
        "X-Dynamo-Coordinator": {"$ref": "#/components/headers/X-Dynamo-Coordinator"},
        "X-Dynamo-Replicas": {"$ref": "#/components/headers/X-Dynamo-Replicas"},
    })
}

/// `kv_headers` plus `X-Context`, `required` or not.
fn kv_headers_with_context(required: bool) -> Value {
    let mut h = kv_headers();
    let ctx = if required {
        json!({"$ref": "#/components/headers/X-Context"})
    } else {
        json!({"$ref": "#/components/headers/X-Context-Optional"})
    };
    if let Some(map) = h.as_object_mut() {
        map.insert("X-Context".into(), ctx);
    }
    h
}

/// The error answers of a `/kv` operation, by status.
fn kv_errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for code in codes {
        let resp = match code {
            400 => error_response(
                "Malformed request: bad or foreign `X-Context`, `r`/`w` not in 1..N, empty key.",
                kv_headers(),
            ),
            401 => json!({"$ref": "#/components/responses/Unauthorized"}),
            404 => error_response(
                "Not found: never written, or deleted (every version a tombstone). Where a tombstone \
                 exists, `X-Context` carries its token, so a later write supersedes it.",
                kv_headers_with_context(false),
            ),
            405 => error_response("Any method other than GET, PUT or DELETE on `/kv/{key}`.", kv_headers()),
            413 => error_response("The value is larger than `max_value_bytes`.", kv_headers()),
            408 => error_response(
                "The request body did not arrive within five request timeouts. Nothing was written.",
                kv_headers(),
            ),
            409 => error_response(
                "The key already has the maximum number of concurrent versions (64): read it and write \
                 back a resolution with its context. Nothing was written.",
                kv_headers(),
            ),
            414 => error_response("The key is longer than 1024 bytes.", kv_headers()),
            503 => error_response(
                "Fewer replicas than the quorum answered in time (or fewer live nodes than the \
                 replicas needed). A write may still be on some replicas.",
                kv_headers(),
            ),
            _ => continue,
        };
        out.insert(code.to_string(), resp);
    }
    out
}

fn with(mut base: serde_json::Map<String, Value>, extra: serde_json::Map<String, Value>) -> Value {
    base.extend(extra);
    Value::Object(base)
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn kv_path_item(cfg: &Config) -> Value {
    let n = cfg.n;
    let quorum = |name: &str, default: usize, what: &str| {
        json!({
            "name": name,
            "in": "query",
            "required": false,
            "description": format!("{what} quorum: replicas that must answer (default {default}, at most N = {n})."),
            "schema": {"type": "integer", "minimum": 1, "maximum": n, "default": default},
        })
    };
    let context_param = json!({
        "name": "X-Context",
        "in": "header",
        "required": false,
        "description": "The opaque token from an earlier read or write of this key; the new version \
                        supersedes exactly what it has seen. Absent or empty: a blind write, \
                        concurrent with every existing version.",
        "schema": {"type": "string"},
    });
    let get_ok = obj(json!({
        "200": {
            "description": "One version: its value as the body, with the Content-Type it was written \
                            with. With `Accept: application/json`, the siblings document instead.",
            "headers": kv_headers_with_context(true),
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Siblings"}},
                "*/*": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "300": {
            "description": "Concurrent versions (siblings); writing with this context supersedes them all.",
            "headers": kv_headers_with_context(true),
            "content": json_content(json!({"$ref": "#/components/schemas/Siblings"})),
        },
    }));
    let written = obj(json!({
        "204": {
            "description": "Stored on W replicas. `X-Context` is the new version's token.",
            "headers": kv_headers_with_context(true),
        },
    }));
    json!({
        "parameters": [{"$ref": "#/components/parameters/Key"}],
        "get": {
            "operationId": "kvGet",
            "summary": "Read a key",
            "tags": ["kv"],
            "parameters": [quorum("r", cfg.r, "Read")],
            "responses": with(get_ok, kv_errors(&[400, 401, 404, 405, 414, 503])),
        },
        "put": {
            "operationId": "kvPut",
            "summary": "Write a value (a new version)",
            "tags": ["kv"],
            "parameters": [quorum("w", cfg.w, "Write"), context_param.clone()],
            "requestBody": {
                "required": false,
                "description": format!(
                    "The value: 0 to {} bytes. Its Content-Type is stored and returned with it \
                     (`application/octet-stream` when absent).",
                    cfg.max_value_bytes
                ),
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            "responses": with(written.clone(), kv_errors(&[400, 401, 405, 408, 409, 413, 414, 503])),
        },
        "delete": {
            "operationId": "kvDelete",
            "summary": "Delete a key (write a tombstone version)",
            "tags": ["kv"],
            "parameters": [quorum("w", cfg.w, "Write"), context_param],
            "responses": with(written, kv_errors(&[400, 401, 405, 409, 414, 503])),
        },
    })
}

fn simple_get(id: &str, summary: &str, tag: &str, ok: Value, extra: serde_json::Map<String, Value>) -> Value {
    let mut responses = obj(json!({
        "200": ok,
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }));
    responses.extend(extra);
    json!({"get": {"operationId": id, "summary": summary, "tags": [tag], "responses": responses}})
}

fn schemas() -> Value {
    let uint = json!({"type": "integer", "minimum": 0});
    let hex128 = json!({"type": "string", "pattern": "^[0-9a-f]{32}$"});
    let op_stats = json!({
        "type": "object",
        "required": ["count", "errors", "p50_ms", "p99_ms"],
        "properties": {
            "count": uint, "errors": uint,
            "p50_ms": {"type": "number", "minimum": 0},
            "p99_ms": {"type": "number", "minimum": 0},
        },
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Machine-readable kind: bad_request, unauthorized, key_too_long, \
                                    value_too_large, not_found, method_not_allowed, conflict, unavailable, \
                                    internal.",
                },
                "message": {"type": "string", "minLength": 1},
            },
        },
        "Sibling": {
            "type": "object",
            "required": ["value"],
            "properties": {
                "value": {
                    "type": "string", "format": "byte", "nullable": true,
                    "description": "The value, base64; null for a deleted sibling (tombstone).",
                },
                "content_type": {"type": "string"},
            },
        },
        "Siblings": {
            "type": "object",
            "required": ["context", "siblings"],
            "properties": {
                "context": {"type": "string", "minLength": 1},
                "siblings": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Sibling"}},
            },
        },
        "MembershipChange": {
            "type": "object",
            "required": ["status", "node_id"],
            "properties": {
                "status": {"type": "string", "enum": ["leaving", "removed"]},
                "node_id": {"type": "string"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Member": {
            "type": "object",
            "required": ["node_id", "peer_addr", "http_addr", "status", "partitions_owned",
                         "partitions_replicated", "last_seen_ms"],
            "properties": {
                "node_id": {"type": "string"},
                "peer_addr": {"type": "string"},
                "http_addr": {"type": "string"},
                "status": {"type": "string", "enum": ["up", "suspect", "down", "leaving"]},
                "weight": uint,
                "partitions_owned": uint,
                "partitions_replicated": uint,
                "last_seen_ms": uint,
            },
        },
        "Status": {
            "type": "object",
            "required": ["node_id", "version", "uptime_s", "n", "r", "w", "partitions", "members",
                         "storage", "hints", "anti_entropy", "requests"],
            "properties": {
                "node_id": {"type": "string"},
                "version": {"type": "string"},
                "uptime_s": uint,
                "n": {"type": "integer", "minimum": 1},
                "r": {"type": "integer", "minimum": 1},
                "w": {"type": "integer", "minimum": 1},
                "partitions": {"type": "integer", "minimum": 1},
                "ring_version": uint,
                "target_ring_version": {"type": "integer", "minimum": 0, "nullable": true},
                "rebalance": {
                    "type": "object",
                    "properties": {
                        "partitions_to_pull": uint,
                        "partitions_pulled": uint,
                        "eta_s": {"type": "integer", "minimum": 0, "nullable": true},
                        "partitions_to_hand_over": uint,
                    },
                },
                "transfers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "partition": uint,
                            "kind": {"type": "string", "enum": ["pull", "handover"]},
                            "peer": {"type": "string"},
                            "keys": uint,
                            "bytes": uint,
                            "elapsed_ms": uint,
                            "keys_per_s": uint,
                            "bytes_per_s": uint,
                        },
                    },
                },
                "admission": {
                    "type": "object",
                    "description": "Admission control of background work (partition transfers): mean client request latency over the last few tenths of a second, and a moving average over some seconds in which no background work ran, and how often and how long background steps were held back because clients were slower than background_latency_percent (by default 150 %) of the quiet figure.",
                    "properties": {
                        "client_latency_ms": {"type": "number", "minimum": 0, "nullable": true},
                        "quiet_latency_ms": {"type": "number", "minimum": 0, "nullable": true},
                        "background_waits": uint,
                        "background_waited_ms": uint,
                    },
                },
                "clock_hygiene": {
                    "type": "object",
                    "description": "Retired store incarnations (removed or departed nodes) and how far their entries are from leaving the version clocks: an entry goes once no version the incarnation minted is left on any member.",
                    "properties": {
                        "retired_actors": uint,
                        "superseded_actors": uint,
                        "forgotten_actors": uint,
                        "sweep": uint,
                        "sweeping": {"type": "array", "items": {"type": "string"}},
                        "versions_left": {"type": "integer", "minimum": 0, "nullable": true},
                        "objects_tidied": uint,
                    },
                },
                "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
                "storage": {
                    "type": "object", "required": ["keys", "bytes"],
                    "properties": {"keys": uint, "bytes": uint},
                },
                "hints": {
                    "type": "object", "required": ["pending", "delivered"],
                    "properties": {"pending": uint, "delivered": uint},
                },
                "anti_entropy": {
                    "type": "object", "required": ["exchanges", "keys_repaired", "last_exchange_ms"],
                    "properties": {
                        "exchanges": uint,
                        "keys_repaired": uint,
                        "last_exchange_ms": {"type": "integer", "minimum": 0, "nullable": true},
                        "tombstones_purged": uint,
                    },
                },
                "read_repairs": uint,
                "requests": {
                    "type": "object", "required": ["get", "put", "delete"],
                    "properties": {"get": op_stats, "put": op_stats, "delete": op_stats},
                },
            },
        },
        "Ring": {
            "type": "object",
            "required": ["partitions", "q", "n", "version", "hash"],
            "properties": {
                "partitions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "start", "end", "owners"],
                        "properties": {
                            "index": uint,
                            "start": hex128,
                            "end": hex128,
                            "owners": {
                                "type": "array", "items": {"type": "string"},
                                "description": "Preference order: the first is the partition's coordinator.",
                            },
                        },
                    },
                },
                "q": {"type": "integer", "minimum": 1},
                "n": {"type": "integer", "minimum": 1},
                "version": uint,
                "hash": {"type": "string", "enum": ["md5"]},
            },
        },
        "LocalVersion": {
            "type": "object",
            "required": ["clock", "value", "tombstone"],
            "properties": {
                "clock": {"type": "object", "additionalProperties": uint},
                "value": {"type": "string", "format": "byte", "nullable": true},
                "content_type": {"type": "string"},
                "tombstone": {"type": "boolean"},
            },
        },
        "Local": {
            "type": "object",
            "required": ["versions", "hinted_for"],
            "properties": {
                "versions": {"type": "array", "items": {"$ref": "#/components/schemas/LocalVersion"}},
                "hinted_for": {"type": "array", "items": {"type": "string"}},
            },
        },
    })
}

/// Whether the document describes `POST /admin/leave` and
/// `POST /admin/remove/{node_id}` (SPEC §4): true exactly when `api::configure`
/// serves them (`tests/openapi.rs` checks "documented iff served").
pub const DOCUMENT_MEMBERSHIP_ADMIN: bool = true;

/// `POST /admin/leave` and `POST /admin/remove/{node_id}`.
fn membership_admin_paths() -> (Value, Value) {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
        })
    };
    let accepted = |description: &str| {
        json!({
            "description": description,
            "content": json_content(json!({"$ref": "#/components/schemas/MembershipChange"})),
        })
    };
    let leave = json!({"post": {
        "operationId": "adminLeave",
        "summary": "This node hands all its partitions to the others, leaves the ring and exits 0",
        "tags": ["admin"],
        "responses": {
            "202": accepted("Leaving: the node shows as `leaving` until everything it held is handed over."),
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "409": error("The node is the last member of its cluster (or no longer a member)."),
        },
    }});
    let remove = json!({
        "parameters": [{
            "name": "node_id",
            "in": "path",
            "required": true,
            "description": "The member to remove for good.",
            "schema": {"type": "string", "minLength": 1},
        }],
        "post": {
            "operationId": "adminRemove",
            "summary": "Remove a member that is gone for good; its partitions are re-replicated from the survivors",
            "tags": ["admin"],
            "responses": {
                "202": accepted("Removed: the decision spreads by gossip."),
                "400": error("The node's own id: a node leaves, it is not removed."),
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": error("No member has this id."),
                "409": error("The change conflicts with the cluster's state."),
            },
        },
    });
    (leave, remove)
}

/// The OpenAPI 3.0 document of this node's HTTP API (SPEC §3–4).
pub fn openapi_document(cfg: &Config) -> Value {
    let auth = if cfg.client_token.is_some() {
        json!([{"bearerAuth": []}])
    } else {
        json!([{}, {"bearerAuth": []}])
    };
    let local_errors = obj(json!({
        "400": {
            "description": "Empty key.",
            "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
        },
        "414": {
            "description": "The key is longer than 1024 bytes.",
            "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
        },
    }));
    let mut paths = serde_json::Map::new();
    paths.insert("/kv/{key}".into(), kv_path_item(cfg));
    paths.insert(
        "/health".into(),
        json!({"get": {
            "operationId": "health",
            "summary": "Liveness for health checks; never needs a token",
            "tags": ["ops"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The node serves requests.",
                    "content": json_content(json!({"$ref": "#/components/schemas/Health"})),
                },
                "503": {
                    "description": "Not serving yet (a node started with seeds waits to join their cluster).",
                    "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
                },
            },
        }}),
    );
    paths.insert(
        "/status".into(),
        simple_get(
            "status",
            "Node, members, storage, hints, anti-entropy and request figures, for dashboards",
            "ops",
            json!({"description": "This node's view.",
                   "content": json_content(json!({"$ref": "#/components/schemas/Status"}))}),
            serde_json::Map::new(),
        ),
    );
    paths.insert(
        "/metrics".into(),
        simple_get(
            "metrics",
            "The figures of /status in Prometheus text format 0.0.4, names prefixed dynamo_",
            "ops",
            json!({"description": "Prometheus text exposition.",
                   "content": {"text/plain": {"schema": {"type": "string"}}}}),
            serde_json::Map::new(),
        ),
    );
    paths.insert(
        "/ring".into(),
        simple_get(
            "ring",
            "The partition map: every partition's hash range (hex) and owners in preference order",
            "ops",
            json!({"description": "The ring.",
                   "content": json_content(json!({"$ref": "#/components/schemas/Ring"}))}),
            serde_json::Map::new(),
        ),
    );
    let mut local = simple_get(
        "adminLocal",
        "What this node's replica (and its hints) hold for a key",
        "admin",
        json!({"description": "This node's versions of the key (an empty list when it holds nothing).",
               "content": json_content(json!({"$ref": "#/components/schemas/Local"}))}),
        local_errors,
    );
    if let Some(m) = local.as_object_mut() {
        m.insert("parameters".into(), json!([{"$ref": "#/components/parameters/Key"}]));
    }
    paths.insert("/admin/local/{key}".into(), local);
    if DOCUMENT_MEMBERSHIP_ADMIN {
        let (leave, remove) = membership_admin_paths();
        paths.insert("/admin/leave".into(), leave);
        paths.insert("/admin/remove/{node_id}".into(), remove);
    }
    paths.insert(
        "/openapi.json".into(),
        simple_get(
            "openapi",
            "This document",
            "ops",
            json!({"description": "OpenAPI 3.0 description of the HTTP API.",
                   "content": json_content(json!({"type": "object", "required": ["openapi", "info", "paths"]}))}),
            serde_json::Map::new(),
        ),
    );

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "dynamo",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A Dynamo-style, highly available key-value store. Every 4xx/5xx carries \
                            {\"error\": kind, \"message\": sentence}; unknown routes answer 404 and \
                            wrong methods 405 with that body.",
        },
        "tags": [
            {"name": "kv", "description": "Client API (SPEC §3)"},
            {"name": "ops", "description": "Operations API (SPEC §4)"},
            {"name": "admin", "description": "Operator views of one node"},
        ],
        "security": auth,
        "paths": paths,
        "components": {
            "parameters": {
                "Key": {
                    "name": "key",
                    "in": "path",
                    "required": true,
                    "description": format!(
                        "The key: the rest of the path, percent-decoded, 1 to {MAX_KEY_BYTES} bytes of any \
                         value (binary and `/` allowed when percent-encoded)."
                    ),
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES},
                },
            },
            "headers": {
                "X-Context": {
                    "required": true,
                    "description": "Opaque causal context token of the version(s) answered.",
                    "schema": {"type": "string", "minLength": 1},
                },
                "X-Context-Optional": {
                    "required": false,
                    "description": "Opaque causal context token of the tombstone, where one exists.",
                    "schema": {"type": "string", "minLength": 1},
                },
                "X-Dynamo-Coordinator": {
                    "required": true,
                    "description": "The node that coordinated the request.",
                    "schema": {"type": "string"},
                },
                "X-Dynamo-Replicas": {
                    "required": true,
                    "description": "How many replicas answered (a not-found included).",
                    "schema": {"type": "integer", "minimum": 0},
                },
            },
            "responses": {
                "Unauthorized": {
                    "description": "The node has a `client_token` and the request lacks \
                                    `Authorization: Bearer <token>`.",
                    "content": json_content(json!({"$ref": "#/components/schemas/Error"})),
                },
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
            "schemas": schemas(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document resolves.
    #[test]
    fn refs_resolve() {
        fn walk(doc: &Value, v: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let ptr = r.strip_prefix('#').unwrap_or(r);
                        if doc.pointer(ptr).is_none() {
                            bad.push(r.clone());
                        }
                    }
                    m.values().for_each(|x| walk(doc, x, bad));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(doc, x, bad)),
                _ => {}
            }
        }
        let doc = openapi_document(&Config::default());
        let mut bad = Vec::new();
        walk(&doc, &doc, &mut bad);
        assert!(bad.is_empty(), "dangling refs: {bad:?}");
    }

    #[test]
    fn quorum_bounds_follow_the_config() {
        let cfg = Config {
            n: 5,
            r: 3,
            w: 4,
            ..Config::default()
        };
        let doc = openapi_document(&cfg);
        let get = &doc["paths"]["/kv/{key}"]["get"]["parameters"][0]["schema"];
        assert_eq!(get["maximum"], 5);
        assert_eq!(get["default"], 3);
        let put = &doc["paths"]["/kv/{key}"]["put"]["parameters"][0]["schema"];
        assert_eq!(put["default"], 4);
    }

    #[test]
    fn auth_is_required_only_with_a_token() {
        let open = openapi_document(&Config::default());
        assert_eq!(open["security"], json!([{}, {"bearerAuth": []}]));
        let closed = openapi_document(&Config {
            client_token: Some("t".into()),
            ..Config::default()
        });
        assert_eq!(closed["security"], json!([{"bearerAuth": []}]));
        assert_eq!(closed["paths"]["/health"]["get"]["security"], json!([]));
    }
}
