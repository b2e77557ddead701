//! The client and operations routes: translation only.
//!
//! Each handler parses the request into a core operation, sends it to the
//! coordinator actor, and renders the answer per SPEC §3–4. No decision
//! about replicas or versions is made here.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use dynamo_actors::coordinator::Coordinate;
use dynamo_actors::gossiper::GetView;
use dynamo_actors::Node;
use dynamo_core::membership::MemberState;
use dynamo_core::wire::{ClientOp, ClientReply, OpError, OpKind};
use dynamo_core::{Object, Value};
use futures::StreamExt;
use serde_json::json;

use crate::error::ApiError;
use crate::metrics::{Op, RequestMetrics};
use crate::parse::KeyError;

/// Header carrying the causal context token.
pub const X_CONTEXT: &str = "x-context";
/// Header naming the node that coordinated a request.
pub const X_COORDINATOR: &str = "x-dynamo-coordinator";
/// Header counting the replicas that answered.
pub const X_REPLICAS: &str = "x-dynamo-replicas";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The node behind this front door.
    pub node: Node,
    /// This worker thread's coordinator.
    pub coordinator: actix::Addr<dynamo_actors::coordinator::Coordinator>,
    /// Request counters.
    pub metrics: Arc<RequestMetrics>,
}

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::ops::configure_ops(cfg);
    cfg.service(
        web::resource("/kv/{key:.*}")
            .route(web::get().to(kv_get))
            .route(web::put().to(kv_put))
            .route(web::delete().to(kv_delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/status")
            .route(web::get().to(status))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/ring")
            .route(web::get().to(ring))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/leave")
            .route(web::post().to(admin_leave))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/remove/{node_id}")
            .route(web::post().to(admin_remove))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/local/{key:.*}")
            .route(web::get().to(admin_local))
            .default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(not_found));
}

/// Middleware: with a `client_token` configured, every route but `/health`
/// needs `Authorization: Bearer <token>` (compared in constant time).
pub async fn require_token(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.node.config.client_token.clone());
    if let Some(expected) = expected.filter(|_| req.path() != "/health") {
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            let resp = ApiError::Unauthorized.error_response();
            return Ok(req.into_response(resp));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {}", req.path())).error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let resp = ApiError::MethodNotAllowed(req.method().to_string()).error_response();
    if req.path().starts_with("/kv/") {
        with_kv_headers(resp, &coordinator_of_self(&req), 0)
    } else {
        resp
    }
}

fn coordinator_of_self(req: &HttpRequest) -> String {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.node.config.node_id.clone())
        .unwrap_or_default()
}

/// The key of a `/kv/...` or `/admin/local/...` request: the rest of the
/// raw path, percent-decoded to bytes.
fn key_of(req: &HttpRequest, prefix: &str) -> Result<Vec<u8>, ApiError> {
    crate::parse::key_from_path(req.uri().path(), prefix).map_err(|e| match e {
        KeyError::Empty => ApiError::BadRequest(e.to_string()),
        KeyError::TooLong(len) => ApiError::KeyTooLong(len),
    })
}

/// The `r` or `w` query parameter, checked against N.
fn quorum_param(req: &HttpRequest, name: &str, n: usize) -> Result<Option<usize>, ApiError> {
    crate::parse::quorum_from_query(req.query_string(), name, n).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The client's context for `key` (empty when absent or blank).
fn context_of(state: &AppState, req: &HttpRequest, key: &[u8]) -> Result<dynamo_core::VersionVector, ApiError> {
    match req.headers().get(X_CONTEXT) {
        None => Ok(Default::default()),
        Some(v) => {
            let token = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("X-Context is not a valid token".into()))?;
            state
                .node
                .contexts
                .decode(key, token)
                .map_err(|e| ApiError::BadRequest(format!("X-Context rejected: {e}")))
        }
    }
}

fn with_kv_headers(mut resp: HttpResponse, coordinator: &str, replicas: usize) -> HttpResponse {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(coordinator) {
        headers.insert(HeaderName::from_static(X_COORDINATOR), v);
    }
    headers.insert(HeaderName::from_static(X_REPLICAS), HeaderValue::from(replicas as u64));
    resp
}

/// Render a failed `/kv` request.
fn kv_error(state: &AppState, err: ApiError) -> HttpResponse {
    with_kv_headers(err.error_response(), &state.node.config.node_id, 0)
}

/// Time a `/kv` handler and count its outcome.
async fn measured<F>(state: &AppState, op: Op, handler: F) -> HttpResponse
where
    F: std::future::Future<Output = Result<HttpResponse, (ApiError, Option<OpError>)>>,
{
    let started = Instant::now();
    let resp = match handler.await {
        Ok(resp) => resp,
        Err((err, Some(OpError::Unavailable { coordinator, ok, .. }))) => {
            with_kv_headers(err.error_response(), &coordinator, ok)
        }
        Err((err, _)) => kv_error(state, err),
    };
    state
        .metrics
        .record(op, started.elapsed(), resp.status().is_server_error());
    resp
}

/// Lift an operation result, keeping the details a 503 needs.
fn op_failed(e: ApiError) -> (ApiError, Option<OpError>) {
    (e, None)
}

async fn run_op(state: &AppState, op: ClientOp) -> Result<ClientReply, (ApiError, Option<OpError>)> {
    let sent = state.coordinator.send(Coordinate { op, may_forward: true }).await;
    match sent {
        Err(e) => Err(op_failed(ApiError::Internal(format!("coordinator unavailable: {e}")))),
        Ok(Err(e)) => Err((ApiError::from(e.clone()), Some(e))),
        Ok(Ok(reply)) => Ok(reply),
    }
}

async fn kv_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    measured(&state, Op::Get, async {
        let key = key_of(&req, "/kv/").map_err(op_failed)?;
        let quorum = quorum_param(&req, "r", state.node.config.n).map_err(op_failed)?;
        let reply = run_op(
            &state,
            ClientOp {
                key: key.clone(),
                kind: OpKind::Get,
                quorum,
            },
        )
        .await?;
        let ClientReply::Read {
            object,
            replicas,
            coordinator,
        } = reply
        else {
            return Err(op_failed(ApiError::Internal("unexpected reply to a read".into())));
        };
        Ok(with_kv_headers(
            render_object(&state, &req, &key, &object),
            &coordinator,
            replicas,
        ))
    })
    .await
}

/// SPEC §3: one value raw (200), siblings as JSON (300), deleted or absent
/// as 404 — with the context token wherever a version exists.
fn render_object(state: &AppState, req: &HttpRequest, key: &[u8], object: &Object) -> HttpResponse {
    let token = (!object.is_empty()).then(|| state.node.contexts.encode(key, &object.context()));
    let builder = |status: StatusCode| {
        let mut b = HttpResponseBuilder::new(status);
        if let Some(t) = &token {
            b.insert_header((X_CONTEXT, t.as_str()));
        }
        b
    };
    if object.is_empty() || object.is_deleted() {
        let err = ApiError::NotFound("key not found".into());
        return builder(StatusCode::NOT_FOUND).json(json!({"error": err.kind(), "message": err.to_string()}));
    }
    let versions = object.versions();
    state.metrics.record_siblings(versions.len());
    if versions.len() == 1 && !wants_json(req.headers()) {
        let value = &versions[0].value;
        return builder(StatusCode::OK)
            .insert_header((CONTENT_TYPE, value.content_type.as_str()))
            .body(value.data.clone().unwrap_or_default());
    }
    let siblings: Vec<serde_json::Value> = versions
        .iter()
        .map(|v| match &v.value.data {
            Some(bytes) => json!({"value": BASE64.encode(bytes), "content_type": v.value.content_type}),
            None => json!({"value": null}),
        })
        .collect();
    let status = if versions.len() == 1 {
        StatusCode::OK
    } else {
        StatusCode::MULTIPLE_CHOICES
    };
    builder(status).json(json!({"context": token, "siblings": siblings}))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// Read a request body of at most `limit` bytes, within `deadline` (a
/// client trickling its body cannot hold a connection and a buffer forever).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    tokio::time::timeout(deadline, read_body_unbounded(req, payload, limit))
        .await
        .map_err(|_| ApiError::Timeout(format!("the request body did not arrive within {deadline:?}")))?
}

async fn read_body_unbounded(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::ValueTooLarge(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::ValueTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn kv_put(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    measured(&state, Op::Put, async {
        let key = key_of(&req, "/kv/").map_err(op_failed)?;
        let quorum = quorum_param(&req, "w", state.node.config.n).map_err(op_failed)?;
        let context = context_of(&state, &req, &key).map_err(op_failed)?;
        // A client gets five request timeouts to send its body.
        let deadline = std::time::Duration::from_millis(state.node.config.request_timeout_ms.saturating_mul(5));
        let body = read_body(&req, payload, state.node.config.max_value_bytes, deadline)
            .await
            .map_err(op_failed)?;
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(Value::DEFAULT_CONTENT_TYPE)
            .to_string();
        let op = ClientOp {
            key: key.clone(),
            kind: OpKind::Put {
                value: Value::bytes(body, content_type),
                context,
            },
            quorum,
        };
        written(&state, &key, run_op(&state, op).await?)
    })
    .await
}

async fn kv_delete(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    measured(&state, Op::Delete, async {
        let key = key_of(&req, "/kv/").map_err(op_failed)?;
        let quorum = quorum_param(&req, "w", state.node.config.n).map_err(op_failed)?;
        let context = context_of(&state, &req, &key).map_err(op_failed)?;
        let op = ClientOp {
            key: key.clone(),
            kind: OpKind::Delete { context },
            quorum,
        };
        written(&state, &key, run_op(&state, op).await?)
    })
    .await
}

fn written(state: &AppState, key: &[u8], reply: ClientReply) -> Result<HttpResponse, (ApiError, Option<OpError>)> {
    let ClientReply::Written {
        context,
        replicas,
        coordinator,
    } = reply
    else {
        return Err(op_failed(ApiError::Internal("unexpected reply to a write".into())));
    };
    let token = state.node.contexts.encode(key, &context);
    let resp = HttpResponse::NoContent().insert_header((X_CONTEXT, token)).finish();
    Ok(with_kv_headers(resp, &coordinator, replicas))
}

/// `200` once the node serves requests: it belongs to a cluster with a
/// ring (a node started with seeds has none until it has heard from them).
async fn health(state: web::Data<AppState>) -> HttpResponse {
    if state.node.cluster.get().ring.version == 0 {
        let err = ApiError::Unavailable("not serving yet: waiting to join the cluster of its seeds".into());
        return err.error_response();
    }
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let node = &state.node;
    let view = node
        .gossiper
        .send(GetView)
        .await
        .map_err(|e| ApiError::Internal(format!("gossiper unavailable: {e}")))?;
    let replica = node.replica.clone();
    // Storage statistics read RocksDB: off the executor thread.
    let storage = web::block(move || replica.stats())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let cfg = &node.config;
    let ring = &view.state.ring;
    // A placeholder ring (version 0: not joined yet) assigns nothing.
    let (owned, replicated) = if ring.version == 0 {
        Default::default()
    } else {
        (ring.owned_counts(), ring.replicated_counts(cfg.n))
    };
    let liveness = node.liveness.get();
    let now = std::time::Instant::now();
    let members: Vec<serde_json::Value> = view
        .state
        .members
        .values()
        .map(|m| {
            json!({
                "node_id": m.node_id,
                "peer_addr": m.peer_addr,
                "http_addr": m.http_addr,
                "status": match m.state {
                    MemberState::Leaving => "leaving",
                    _ if m.node_id == cfg.node_id => "up",
                    _ => liveness.of(&m.node_id).as_str(),
                },
                "weight": m.weight,
                "partitions_owned": owned.get(&m.node_id).copied().unwrap_or(0),
                "partitions_replicated": replicated.get(&m.node_id).copied().unwrap_or(0),
                "last_seen_ms": if m.node_id == cfg.node_id {
                    0
                } else {
                    liveness
                        .last_heard
                        .get(&m.node_id)
                        .map_or(0, |t| now.saturating_duration_since(*t).as_millis() as u64)
                },
            })
        })
        .collect();
    use dynamo_actors::stats::NodeStats;
    let rebalance = node.transfers.summary();
    let (client_latency, quiet_latency) = node.stats.foreground.averages();
    Ok(HttpResponse::Ok().json(json!({
        "node_id": cfg.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": node.started.elapsed().as_secs(),
        "n": cfg.n,
        "r": cfg.r,
        "w": cfg.w,
        "partitions": ring.partitions(),
        "ring_version": ring.version,
        "target_ring_version": view.state.target.as_ref().map(|t| t.version),
        "rebalance": {
            "partitions_to_pull": rebalance.to_pull,
            "partitions_pulled": rebalance.pulled,
            "eta_s": rebalance.eta_s().map(|s| s.round() as u64),
            "partitions_to_hand_over": rebalance.to_hand_over,
        },
        "transfers": rebalance.running.iter().map(|t| {
            let secs = t.started.elapsed().as_secs_f64();
            json!({
                "partition": t.partition,
                "kind": t.kind,
                "peer": t.peer,
                "keys": t.keys,
                "bytes": t.bytes,
                "elapsed_ms": (secs * 1000.0) as u64,
                "keys_per_s": if secs > 0.0 { (t.keys as f64 / secs) as u64 } else { 0 },
                "bytes_per_s": if secs > 0.0 { (t.bytes as f64 / secs) as u64 } else { 0 },
            })
        }).collect::<Vec<_>>(),
        "members": members,
        "storage": {"keys": storage.keys, "bytes": storage.bytes},
        "hints": {
            "pending": NodeStats::get(&node.stats.hints_pending),
            "delivered": NodeStats::get(&node.stats.hints_delivered),
        },
        "anti_entropy": {
            "exchanges": NodeStats::get(&node.stats.ae_exchanges),
            "keys_repaired": NodeStats::get(&node.stats.ae_keys_repaired),
            "last_exchange_ms": node.stats.last_exchange_age_ms(),
            "tombstones_purged": NodeStats::get(&node.stats.tombstones_purged),
        },
        "clock_hygiene": clock_hygiene(&view.state, &node.stats),
        "admission": {
            "client_latency_ms": latency_ms(client_latency),
            "quiet_latency_ms": latency_ms(quiet_latency),
            "background_waits": NodeStats::get(&node.stats.foreground.waits),
            "background_waited_ms": NodeStats::get(&node.stats.foreground.waited_ms),
        },
        "read_repairs": NodeStats::get(&node.stats.read_repairs),
        "requests": state.metrics.to_json(),
    })))
}

/// A latency average in milliseconds (three decimals), if any.
fn latency_ms(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

/// `/status`'s view of clock hygiene: retired store incarnations, how far
/// their entries are from leaving the clocks, and what this node's last
/// scan found.
fn clock_hygiene(
    state: &dynamo_core::membership::ClusterState,
    stats: &dynamo_actors::stats::NodeStats,
) -> serde_json::Value {
    use dynamo_actors::stats::NodeStats;
    let retired = state.retired();
    let incarnations: usize = state.removed.values().map(|r| r.epochs.len()).sum();
    let scanned = NodeStats::get(&stats.hygiene_scans) > 0;
    json!({
        "retired_actors": incarnations,
        "superseded_actors": retired.superseded.len(),
        "forgotten_actors": retired.forgotten.len(),
        "sweep": state.sweep.id,
        "sweeping": state.unswept().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "versions_left": scanned.then(|| NodeStats::get(&stats.hygiene_versions_left)),
        "objects_tidied": NodeStats::get(&stats.hygiene_rewrites),
    })
}

fn membership_error(e: dynamo_actors::gossiper::MembershipError) -> ApiError {
    use dynamo_actors::gossiper::MembershipError as M;
    match e {
        M::UnknownMember(id) => ApiError::NotFound(format!("no member {id}")),
        M::NotAllowed(m) => ApiError::BadRequest(m),
        M::Conflict(m) => ApiError::Conflict(m),
    }
}

/// SPEC §4: hand everything over, leave the ring, exit 0.
async fn admin_leave(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .node
        .gossiper
        .send(dynamo_actors::gossiper::Leave)
        .await
        .map_err(|e| ApiError::Internal(format!("gossiper unavailable: {e}")))?
        .map_err(membership_error)?;
    Ok(HttpResponse::Accepted().json(json!({"status": "leaving", "node_id": state.node.config.node_id})))
}

/// SPEC §4: remove a member that is gone for good.
async fn admin_remove(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    state
        .node
        .gossiper
        .send(dynamo_actors::gossiper::Remove(id.clone()))
        .await
        .map_err(|e| ApiError::Internal(format!("gossiper unavailable: {e}")))?
        .map_err(membership_error)?;
    Ok(HttpResponse::Accepted().json(json!({"status": "removed", "node_id": id})))
}

/// SPEC §4: the partition map, so a partition-aware client can send a
/// request straight to a coordinator and a dashboard can draw the ring.
async fn ring(state: web::Data<AppState>) -> HttpResponse {
    let cluster = state.node.cluster.get();
    let ring = &cluster.ring;
    let q = ring.partitions();
    let n = state.node.config.n;
    let partitions: Vec<serde_json::Value> = (0..q)
        .map(|p| {
            let start = dynamo_core::ring::partition_start(p, q);
            let end = if p + 1 == q {
                u128::MAX
            } else {
                dynamo_core::ring::partition_start(p + 1, q) - 1
            };
            json!({
                "index": p,
                // 128-bit positions as hex strings: JSON numbers cannot hold them.
                "start": format!("{start:032x}"),
                "end": format!("{end:032x}"),
                "owners": ring.owners_of(p, n),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "partitions": partitions,
        "q": q,
        "n": n,
        "version": ring.version,
        "hash": "md5",
    }))
}

async fn admin_local(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed(req.method().to_string()));
    }
    let key = key_of(&req, "/admin/local/")?;
    let replica = &state.node.replica;
    let internal = |e: dynamo_actors::replica::ReplicaError| ApiError::Internal(e.to_string());
    let members: Vec<String> = state.node.cluster.get().members.keys().cloned().collect();
    let hinted_for = replica.hinted_owners(key.clone(), members).await.map_err(internal)?;
    // Everything this node stores for the key: its own replica and any
    // hints it keeps for down owners.
    let mut object = replica
        .get(key.clone(), None)
        .await
        .map_err(internal)?
        .unwrap_or_default();
    for owner in &hinted_for {
        if let Some(hinted) = replica.get(key.clone(), Some(owner.clone())).await.map_err(internal)? {
            object = object.sync(&hinted);
        }
    }
    let versions: Vec<serde_json::Value> = object
        .versions()
        .iter()
        .map(|v| {
            let clock: serde_json::Map<String, serde_json::Value> =
                v.clock().iter().map(|(a, c)| (a.to_string(), json!(c))).collect();
            json!({
                "clock": clock,
                "value": v.value.data.as_ref().map(|d| BASE64.encode(d)),
                "content_type": v.value.content_type,
                "tombstone": v.value.is_tombstone(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"versions": versions, "hinted_for": hinted_for})))
}
