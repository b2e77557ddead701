//! `GET /openapi.json` (SPEC §4): valid JSON, OpenAPI 3.x, every route of
//! SPEC §3–4 the node serves with its methods, parameters, status codes and
//! the error shape — and nothing the node does not serve. The schema-driven
//! fuzzing of a live cluster against it is `scripts/schemathesis.sh`.

mod common;

use common::*;
use serde_json::Value;

/// The routes and methods the document must describe.
const ROUTES: &[(&str, &[&str])] = &[
    ("/kv/{key}", &["get", "put", "delete"]),
    ("/health", &["get"]),
    ("/status", &["get"]),
    ("/metrics", &["get"]),
    ("/ring", &["get"]),
    ("/admin/local/{key}", &["get"]),
    ("/openapi.json", &["get"]),
];

/// Served once membership changes land (`ops::DOCUMENT_MEMBERSHIP_ADMIN`).
const MEMBERSHIP_ROUTES: &[(&str, &[&str])] = &[("/admin/leave", &["post"]), ("/admin/remove/{node_id}", &["post"])];

fn routes() -> Vec<(&'static str, &'static [&'static str])> {
    let mut r = ROUTES.to_vec();
    if dynamo_http::ops::DOCUMENT_MEMBERSHIP_ADMIN {
        r.extend_from_slice(MEMBERSHIP_ROUTES);
    }
    r
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
            resolve(doc, doc.pointer(ptr).unwrap_or_else(|| panic!("dangling $ref {r}")))
        }
        None => v,
    }
}

fn all_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| all_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_refs(x, out)),
        _ => {}
    }
}

/// The parameters of an operation, path-level ones included, resolved.
fn params<'a>(doc: &'a Value, path: &str, method: &str) -> Vec<&'a Value> {
    let item = &doc["paths"][path];
    let mut out: Vec<&Value> = Vec::new();
    for list in [&item["parameters"], &item[method]["parameters"]] {
        if let Some(a) = list.as_array() {
            out.extend(a.iter().map(|p| resolve(doc, p)));
        }
    }
    out
}

fn fetch_doc(c: &Cluster) -> Value {
    let r = c.get(0, "/openapi.json");
    assert_eq!(r.status, 200, "{r:?}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

#[test]
fn document_describes_every_route() {
    let c = Cluster::start(1, Opts::default());
    let doc = fetch_doc(&c);

    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    for r in &refs {
        resolve(&doc, &serde_json::json!({ "$ref": r }));
    }

    let paths = doc["paths"].as_object().expect("paths object");
    let routes = routes();
    for (path, methods) in &routes {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} not documented"));
        for m in METHODS {
            assert_eq!(
                item.get(*m).is_some(),
                methods.contains(m),
                "{path} {m}: documented iff served"
            );
        }
        for m in *methods {
            let op = &item[*m];
            assert!(op["operationId"].is_string(), "{path} {m}: no operationId");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{path} {m}: no 2xx response"
            );
            // Every error answer has the SPEC's error shape.
            for (code, resp) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    let resp = resolve(&doc, resp);
                    let schema = resolve(&doc, &resp["content"]["application/json"]["schema"]);
                    assert_eq!(
                        schema["required"],
                        serde_json::json!(["error", "message"]),
                        "{path} {m} {code}: not the error shape"
                    );
                }
            }
            // Path templates and path parameters agree.
            for p in params(&doc, path, m) {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap_or_default();
                    assert!(path.contains(&format!("{{{name}}}")), "{path}: stray path param {name}");
                    assert_eq!(p["required"], true, "{path}: path param {name} not required");
                }
            }
        }
    }
    // Nothing documented that the list above does not know.
    for path in paths.keys() {
        assert!(
            routes.iter().any(|(p, _)| p == path),
            "{path} is documented: add it to ROUTES (and check it is served)"
        );
    }

    // /kv: r and w bounded by N with the configured defaults, X-Context
    // in, the SPEC's statuses, the X-Dynamo-* headers out.
    let kv = &doc["paths"]["/kv/{key}"];
    for (m, q, default) in [("get", "r", R), ("put", "w", W), ("delete", "w", W)] {
        let ps = params(&doc, "/kv/{key}", m);
        let quorum = ps
            .iter()
            .find(|p| p["name"] == q && p["in"] == "query")
            .unwrap_or_else(|| panic!("kv {m}: no {q} parameter"));
        assert_eq!(quorum["schema"]["minimum"], 1);
        assert_eq!(quorum["schema"]["maximum"], N);
        assert_eq!(quorum["schema"]["default"], default);
        if m != "get" {
            assert!(
                ps.iter().any(|p| p["name"] == "X-Context" && p["in"] == "header"),
                "kv {m}: no X-Context header parameter"
            );
        }
        let responses = kv[m]["responses"].as_object().expect("responses");
        let want: &[&str] = match m {
            "get" => &["200", "300", "400", "401", "404", "405", "414", "503"],
            "put" => &["204", "400", "401", "405", "413", "414", "503"],
            _ => &["204", "400", "401", "405", "414", "503"],
        };
        for code in want {
            let resp = resolve(
                &doc,
                responses.get(*code).unwrap_or_else(|| panic!("kv {m}: no {code}")),
            );
            if *code != "401" {
                for h in ["X-Dynamo-Coordinator", "X-Dynamo-Replicas"] {
                    assert!(resp["headers"].get(h).is_some(), "kv {m} {code}: no {h} header");
                }
            }
        }
        let ok = if m == "get" { "200" } else { "204" };
        let ctx = resolve(&doc, &responses[ok]["headers"]["X-Context"]);
        assert_eq!(ctx["required"], true, "kv {m} {ok}: X-Context not required");
    }
    assert!(kv["put"]["requestBody"]["content"].is_object(), "PUT has no body");
    let siblings = resolve(
        &doc,
        &kv["get"]["responses"]["300"]["content"]["application/json"]["schema"],
    );
    assert_eq!(siblings["required"], serde_json::json!(["context", "siblings"]));

    // The /ring shape.
    let ring = resolve(
        &doc,
        &doc["paths"]["/ring"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
    );
    for f in ["partitions", "q", "n", "version", "hash"] {
        assert!(ring["properties"].get(f).is_some(), "/ring schema lacks {f}");
    }
    let part = &ring["properties"]["partitions"]["items"]["properties"];
    for f in ["index", "start", "end", "owners"] {
        assert!(part.get(f).is_some(), "/ring partition schema lacks {f}");
    }
    // /metrics is text.
    assert!(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .get("text/plain")
        .is_some());
}

/// Every documented operation is served (no route-404, no 405), and the
/// §4 routes the document leaves out are indeed not served yet.
#[test]
fn documented_operations_are_served_and_undocumented_ones_are_not() {
    let c = Cluster::start(1, Opts::default());
    let doc = fetch_doc(&c);
    let no_route = |r: &Resp| {
        r.status == 405
            || (r.status == 404
                && serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(|m| m.starts_with("no route")))
                    .unwrap_or(false))
    };
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            // On a one-node cluster: leaving is refused (last member, 409),
            // removing an unknown member is a 404 of its own.
            let concrete = path.replace("{key}", "some-key").replace("{node_id}", "nobody");
            let method = m.to_uppercase();
            let body = (method == "PUT").then_some(&b"v"[..]);
            let r = c.http(0, &method, &concrete, &[], body);
            assert!(!no_route(&r), "{method} {concrete} is documented but not served: {r:?}");
        }
    }
    // SPEC §4 routes that are not documented must not be served: once one
    // is, it must be added to the document.
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path, template) in [
        ("POST", "/admin/leave", "/admin/leave"),
        ("POST", "/admin/remove/nobody", "/admin/remove/{node_id}"),
    ] {
        if paths.contains_key(template) {
            continue;
        }
        let r = c.http(0, method, path, &[], Some(b""));
        assert!(
            no_route(&r),
            "{method} {path} is served ({}) but {template} is not in /openapi.json",
            r.status
        );
    }
}
