//! The client API (SPEC §3) and the operations API (SPEC §4) against a real
//! cluster of `dynamo` processes. Every cluster runs N=3, R=2, W=2, Q=16.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn start3() -> Cluster {
    Cluster::start(3, Opts::default())
}

fn v(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// PUT / GET basics
// ---------------------------------------------------------------------------

#[test]
fn put_then_get_through_another_node() {
    let c = start3();

    let r = c
        .kv(0, "PUT", b"greeting")
        .content_type("text/x-dynamo-test")
        .body(b"hello world")
        .send();
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.body.is_empty(), "204 with a body: {r:?}");
    assert!(r.context().is_some(), "PUT 204 without a non-empty X-Context: {r:?}");
    assert_kv_headers(&c, &r, W);

    for reader in [1, 2] {
        let g = c.kv(reader, "GET", b"greeting").send();
        assert_eq!(g.status, 200, "{g:?}");
        assert_eq!(g.body, b"hello world", "{g:?}");
        assert_eq!(g.header("Content-Type"), Some("text/x-dynamo-test"), "{g:?}");
        assert!(g.context().is_some(), "GET 200 without X-Context: {g:?}");
        assert_kv_headers(&c, &g, R);
    }

    // No Content-Type on the PUT: the value is application/octet-stream.
    let raw = [0u8, 1, 2, 255, 254, b'\n', 0];
    let r = c.kv(2, "PUT", b"raw-bytes").body(&raw).send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(0, "GET", b"raw-bytes").send();
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body, raw, "{g:?}");
    assert_eq!(g.header("Content-Type"), Some("application/octet-stream"), "{g:?}");

    // Empty value (0 bytes) round-trips.
    let r = c
        .kv(1, "PUT", b"empty-value")
        .content_type("text/plain")
        .body(b"")
        .send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(2, "GET", b"empty-value").send();
    assert_eq!(g.status, 200, "empty value must read back as 200: {g:?}");
    assert!(g.body.is_empty(), "{g:?}");
    assert_eq!(g.header("Content-Type"), Some("text/plain"), "{g:?}");

    // Never written: 404 with a JSON error; the replicas that said "not
    // found" are counted.
    let g = c.kv(1, "GET", b"never-written").send();
    assert_json_error(&g, 404);
    assert_kv_headers(&c, &g, R);
}

#[test]
fn binary_and_slash_keys_round_trip() {
    let c = start3();

    // Arbitrary bytes, including NUL, '/', '%', '?', '#', non-UTF-8.
    let key: Vec<u8> = vec![
        0x00, b'/', 0xff, 0xfe, b' ', b'%', b'?', b'#', b'k', 0x01, b'+', b'&', b'=', 0x00,
    ];
    let r = c.kv(0, "PUT", &key).body(b"binary-key-value").send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(1, "GET", &key).send();
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body, b"binary-key-value");
    // The same key with every byte percent-encoded is the same key.
    let g = c.raw(2, "GET", &format!("/kv/{}", encode_all(&key))).send();
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body, b"binary-key-value");
    // A key that differs only by the trailing NUL is a different key.
    let g = c.kv(2, "GET", &key[..key.len() - 1]).send();
    assert_json_error(&g, 404);

    // `/kv/a/b` is the key `a/b`.
    let r = c.raw(0, "PUT", "/kv/a/b").body(b"slash").send();
    assert_eq!(r.status, 204, "{r:?}");
    for path in ["/kv/a%2Fb", "/kv/a%2fb", "/kv/a/b"] {
        let g = c.raw(1, "GET", path).send();
        assert_eq!(g.status, 200, "GET {path}: {g:?}");
        assert_eq!(g.body, b"slash", "GET {path}");
    }
    // ... and not the key `a` nor `b`.
    assert_json_error(&c.raw(2, "GET", "/kv/a").send(), 404);
    assert_json_error(&c.raw(2, "GET", "/kv/b").send(), 404);

    // Written through the encoded form, read through the path form.
    let r = c.raw(2, "PUT", "/kv/x%2Fy%2Fz").body(b"deep").send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.raw(0, "GET", "/kv/x/y/z").send();
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body, b"deep");

    // UTF-8 key.
    let key = "ключ/日本語 ✓".as_bytes();
    let r = c.kv(1, "PUT", key).body(b"utf8").send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(0, "GET", key).send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"utf8"[..]), "{g:?}");
}

// ---------------------------------------------------------------------------
// Versions, contexts and siblings
// ---------------------------------------------------------------------------

#[test]
fn blind_puts_through_one_node_become_siblings_and_context_resolves_them() {
    let c = start3();

    let r1 = c.kv(0, "PUT", b"sib").content_type("text/plain").body(b"one").send();
    assert_eq!(r1.status, 204, "{r1:?}");
    let r2 = c
        .kv(0, "PUT", b"sib")
        .content_type("application/x-two")
        .body(b"two")
        .send();
    assert_eq!(r2.status, 204, "{r2:?}");

    let g = c.kv(1, "GET", b"sib").send();
    assert_eq!(g.status, 300, "two blind writes must be kept as siblings: {g:?}");
    assert_kv_headers(&c, &g, R);
    let (ctx, sibs) = parse_siblings(&g);
    assert_eq!(
        sibs,
        vec![
            Sibling {
                value: v("one"),
                content_type: Some("text/plain".into())
            },
            Sibling {
                value: v("two"),
                content_type: Some("application/x-two".into())
            },
        ],
        "{g:?}"
    );

    // Writing with the 300's context supersedes both.
    let r = c.kv(2, "PUT", b"sib").ctx(Some(&ctx)).body(b"merged").send();
    assert_eq!(r.status, 204, "{r:?}");
    for reader in 0..3 {
        let g = c.kv(reader, "GET", b"sib").send();
        assert_eq!(g.status, 200, "resolved key must have one version: {g:?}");
        assert_eq!(g.body, b"merged");
    }
}

#[test]
fn blind_puts_through_different_nodes_become_siblings() {
    let c = start3();

    let r = c.kv(0, "PUT", b"k").body(b"from-node1").send();
    assert_eq!(r.status, 204, "{r:?}");
    let r = c.kv(1, "PUT", b"k").body(b"from-node2").send();
    assert_eq!(r.status, 204, "{r:?}");
    let r = c.kv(2, "PUT", b"k").body(b"from-node3").send();
    assert_eq!(r.status, 204, "{r:?}");

    for reader in 0..3 {
        let g = c.kv(reader, "GET", b"k").send();
        assert_eq!(g.status, 300, "{g:?}");
        let (_, sibs) = parse_siblings(&g);
        assert_eq!(
            values(&sibs),
            vec![v("from-node1"), v("from-node2"), v("from-node3")],
            "{g:?}"
        );
        for s in &sibs {
            assert_eq!(s.content_type.as_deref(), Some("application/octet-stream"), "{g:?}");
        }
    }

    // Resolve through a node, read through another.
    let (ctx, _) = parse_siblings(&c.kv(1, "GET", b"k").send());
    let r = c.kv(1, "PUT", b"k").ctx(Some(&ctx)).body(b"winner").send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(0, "GET", b"k").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"winner"[..]), "{g:?}");
}

#[test]
fn a_write_supersedes_exactly_what_its_context_has_seen() {
    let c = start3();

    // v1 -> v2 with v1's context: one version.
    let c1 = c.put_ok(0, b"chain", b"v1", None);
    let c2 = c.put_ok(1, b"chain", b"v2", Some(&c1));
    let g = c.kv(2, "GET", b"chain").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v2"[..]), "{g:?}");
    // v3 with v2's context (returned by the PUT itself): still one version.
    c.put_ok(2, b"chain", b"v3", Some(&c2));
    let g = c.kv(0, "GET", b"chain").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v3"[..]), "{g:?}");
    // A context from GET works too.
    let ctx = c.kv(1, "GET", b"chain").send().context().expect("GET 200 X-Context");
    c.put_ok(1, b"chain", b"v4", Some(&ctx));
    let g = c.kv(2, "GET", b"chain").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v4"[..]), "{g:?}");

    // Two writes with the same context are concurrent: both kept, the
    // version they both saw is gone.
    let base = c.put_ok(0, b"fork", b"base", None);
    c.put_ok(0, b"fork", b"left", Some(&base));
    c.put_ok(1, b"fork", b"right", Some(&base));
    let g = c.kv(2, "GET", b"fork").send();
    assert_eq!(g.status, 300, "{g:?}");
    let (ctx, sibs) = parse_siblings(&g);
    assert_eq!(values(&sibs), vec![v("left"), v("right")], "{g:?}");

    // A write whose context saw only `base` and `left`... (the left write's
    // own token) supersedes `left` but not `right`.
    let fork2_base = c.put_ok(0, b"fork2", b"base", None);
    let left_ctx = c.put_ok(0, b"fork2", b"left", Some(&fork2_base));
    c.put_ok(1, b"fork2", b"right", Some(&fork2_base));
    c.put_ok(2, b"fork2", b"left-2", Some(&left_ctx));
    let g = c.kv(0, "GET", b"fork2").send();
    assert_eq!(g.status, 300, "{g:?}");
    let (_, sibs2) = parse_siblings(&g);
    assert_eq!(values(&sibs2), vec![v("left-2"), v("right")], "{g:?}");

    // The 300's context supersedes all siblings.
    c.put_ok(1, b"fork", b"joined", Some(&ctx));
    let g = c.kv(0, "GET", b"fork").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"joined"[..]), "{g:?}");
}

#[test]
fn accept_json_returns_the_siblings_shape_for_one_version() {
    let c = start3();
    let r = c
        .kv(0, "PUT", b"doc")
        .content_type("text/markdown")
        .body(b"# title")
        .send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(1, "GET", b"doc").header("Accept", "application/json").send();
    assert_eq!(g.status, 200, "{g:?}");
    assert_kv_headers(&c, &g, R);
    let (_, sibs) = parse_siblings(&g);
    assert_eq!(
        sibs,
        vec![Sibling {
            value: v("# title"),
            content_type: Some("text/markdown".into())
        }],
        "{g:?}"
    );
    // Without the Accept header, the raw value.
    let g = c.kv(2, "GET", b"doc").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"# title"[..]), "{g:?}");
}

// ---------------------------------------------------------------------------
// DELETE
// ---------------------------------------------------------------------------

/// Anti-entropy is slowed down in these clusters so that a tombstone is not
/// purged between a DELETE and the GET that looks at it.
fn start3_slow_anti_entropy() -> Cluster {
    Cluster::start(3, Opts::args(&["--anti-entropy-interval-ms", "600000"]))
}

#[test]
fn delete_writes_a_tombstone() {
    let c = start3_slow_anti_entropy();

    let c1 = c.put_ok(0, b"doomed", b"alive", None);
    let d = c.kv(1, "DELETE", b"doomed").ctx(Some(&c1)).send();
    assert_eq!(d.status, 204, "{d:?}");
    assert!(d.context().is_some(), "DELETE 204 without X-Context: {d:?}");
    assert_kv_headers(&c, &d, W);

    for reader in 0..3 {
        let g = c.kv(reader, "GET", b"doomed").send();
        assert_json_error(&g, 404);
        assert!(
            g.context().is_some(),
            "404 over a tombstone must carry its X-Context: {g:?}"
        );
        assert_kv_headers(&c, &g, R);
    }

    // Writing with the tombstone's context brings the key back, alone.
    let tomb_ctx = c.kv(2, "GET", b"doomed").send().context().unwrap();
    c.put_ok(2, b"doomed", b"reborn", Some(&tomb_ctx));
    let g = c.kv(0, "GET", b"doomed").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"reborn"[..]), "{g:?}");

    // DELETE of a key never written: 204 with a context; then 404 + context.
    let d = c.kv(0, "DELETE", b"never-written").send();
    assert_eq!(d.status, 204, "{d:?}");
    assert!(d.context().is_some(), "{d:?}");
    let g = c.kv(1, "GET", b"never-written").send();
    assert_json_error(&g, 404);
    assert!(g.context().is_some(), "{g:?}");

    // Concurrent tombstones only: still 404.
    let base = c.put_ok(0, b"twice", b"x", None);
    let d1 = c.kv(0, "DELETE", b"twice").ctx(Some(&base)).send();
    let d2 = c.kv(1, "DELETE", b"twice").ctx(Some(&base)).send();
    assert_eq!((d1.status, d2.status), (204, 204), "{d1:?} {d2:?}");
    let g = c.kv(2, "GET", b"twice").send();
    assert_json_error(&g, 404);
}

#[test]
fn delete_concurrent_with_a_write_keeps_the_write_as_a_sibling() {
    let c = start3_slow_anti_entropy();

    let c1 = c.put_ok(0, b"contested", b"v1", None);
    c.put_ok(0, b"contested", b"v2", Some(&c1));
    let d = c.kv(1, "DELETE", b"contested").ctx(Some(&c1)).send();
    assert_eq!(d.status, 204, "{d:?}");

    for reader in 0..3 {
        let g = c.kv(reader, "GET", b"contested").send();
        assert_eq!(
            g.status, 300,
            "write concurrent with a delete must survive as a sibling: {g:?}"
        );
        let (_, sibs) = parse_siblings(&g);
        assert_eq!(values(&sibs), vec![None, v("v2")], "{g:?}");
    }

    // Delete first, then the concurrent write: same outcome.
    let c1 = c.put_ok(1, b"contested2", b"v1", None);
    let d = c.kv(2, "DELETE", b"contested2").ctx(Some(&c1)).send();
    assert_eq!(d.status, 204, "{d:?}");
    c.put_ok(0, b"contested2", b"late-write", Some(&c1));
    let g = c.kv(1, "GET", b"contested2").send();
    assert_eq!(g.status, 300, "{g:?}");
    let (ctx, sibs) = parse_siblings(&g);
    assert_eq!(values(&sibs), vec![None, v("late-write")], "{g:?}");

    // Resolving with the 300's context.
    c.put_ok(2, b"contested2", b"settled", Some(&ctx));
    let g = c.kv(0, "GET", b"contested2").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"settled"[..]), "{g:?}");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Flip one character in the middle of a token to another token character.
fn flip_one_char(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn malformed_context_is_rejected_and_changes_nothing() {
    let c = start3();
    let ctx = c.put_ok(0, b"guarded", b"original", None);

    let flipped = flip_one_char(&ctx);
    assert_ne!(flipped, ctx);
    for bad in ["garbage!!not-a-token", "%%%", flipped.as_str()] {
        let r = c.kv(1, "PUT", b"guarded").ctx(Some(bad)).body(b"evil").send();
        assert_json_error(&r, 400);
        // "Every /kv response" carries the two headers, errors included.
        assert_kv_headers(&c, &r, 0);
        let r = c.kv(2, "DELETE", b"guarded").ctx(Some(bad)).send();
        assert_json_error(&r, 400);
    }
    // A truncated token is malformed too.
    let half: String = ctx.chars().take(ctx.chars().count() / 2).collect();
    let r = c.kv(1, "PUT", b"guarded").ctx(Some(&half)).body(b"evil").send();
    assert_json_error(&r, 400);

    // Nothing changed: one version, the original, everywhere.
    for reader in 0..3 {
        let g = c.kv(reader, "GET", b"guarded").send();
        assert_eq!((g.status, g.body.as_slice()), (200, &b"original"[..]), "{g:?}");
    }
    for i in 0..3 {
        let local = local_versions(&c.admin_local(i, b"guarded"));
        assert!(
            local.is_empty() || local == vec![v("original")],
            "{} stores {local:?} after rejected writes",
            node_id(i)
        );
    }

    // An empty `X-Context:` header counts as absent: a blind write, so a
    // sibling of the existing value rather than a 400.
    c.put_ok(0, b"empty-ctx", b"first", None);
    let r = c
        .kv(1, "PUT", b"empty-ctx")
        .header("X-Context", "")
        .body(b"second")
        .send();
    assert_eq!(r.status, 204, "empty X-Context must count as absent: {r:?}");
    let g = c.kv(2, "GET", b"empty-ctx").send();
    assert_eq!(g.status, 300, "{g:?}");
    let (_, sibs) = parse_siblings(&g);
    assert_eq!(values(&sibs), vec![v("first"), v("second")], "{g:?}");

    for i in 0..3 {
        assert_eq!(
            c.get(i, "/health").status,
            200,
            "{} unhealthy after bad input",
            node_id(i)
        );
    }
}

#[test]
fn bad_quorum_parameters_empty_key_routes_and_methods() {
    let c = start3();
    // w=3, so that even r=1 must see it.
    let r = c.kv(0, "PUT", b"q").query("w", "3").body(b"stable").send();
    assert_eq!(r.status, 204, "{r:?}");

    for r in ["0", "4", "abc", "-1"] {
        let g = c.kv(1, "GET", b"q").query("r", r).send();
        assert_json_error(&g, 400);
        assert_kv_headers(&c, &g, 0);
    }
    for w in ["0", "4", "abc", "2.5"] {
        let p = c.kv(2, "PUT", b"q").query("w", w).body(b"bad-w").send();
        assert_json_error(&p, 400);
        let d = c.kv(0, "DELETE", b"q").query("w", w).send();
        assert_json_error(&d, 400);
    }
    // In-range values work.
    for r in ["1", "2", "3"] {
        let g = c.kv(1, "GET", b"q").query("r", r).send();
        assert_eq!((g.status, g.body.as_slice()), (200, &b"stable"[..]), "r={r}: {g:?}");
    }
    // The rejected writes changed nothing.
    let g = c.kv(1, "GET", b"q").query("r", "3").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"stable"[..]), "{g:?}");

    // Empty key.
    for m in ["GET", "PUT", "DELETE"] {
        let r = c.raw(0, m, "/kv/").send();
        assert_json_error(&r, 400);
    }

    // Unknown routes.
    for path in ["/nope", "/kv", "/", "/admin/nope", "/statusx"] {
        let r = c.get(1, path);
        // `/kv` without a slash is either an unknown route or an empty key.
        if path == "/kv" && r.status == 400 {
            assert_json_error(&r, 400);
        } else {
            assert_json_error(&r, 404);
        }
    }
    // Wrong methods.
    for (m, path) in [
        ("POST", "/kv/x"),
        ("PATCH", "/kv/x"),
        ("POST", "/health"),
        ("DELETE", "/status"),
    ] {
        let r = c.raw(2, m, path).send();
        assert_json_error(&r, 405);
    }

    for i in 0..3 {
        assert_eq!(
            c.get(i, "/health").status,
            200,
            "{} unhealthy after bad input",
            node_id(i)
        );
    }
}

#[test]
fn key_and_value_size_limits() {
    let c = Cluster::start(3, Opts::args(&["--max-value-bytes", "1000"]));

    // Values: 1000 bytes is fine, 1001 is 413 and not stored.
    let big: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let r = c.kv(0, "PUT", b"v1000").body(&big).send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(1, "GET", b"v1000").send();
    assert_eq!((g.status, g.body.len()), (200, 1000), "{g:?}");
    assert_eq!(g.body, big);

    let mut bigger = big.clone();
    bigger.push(7);
    let r = c.kv(0, "PUT", b"v1001").body(&bigger).send();
    assert_json_error(&r, 413);
    assert_kv_headers(&c, &r, 0);
    assert_json_error(&c.kv(2, "GET", b"v1001").send(), 404);
    // Over the limit on an existing key: the old value stays.
    let r = c.kv(2, "PUT", b"v1000").body(&bigger).send();
    assert_json_error(&r, 413);
    let g = c.kv(1, "GET", b"v1000").send();
    assert_eq!((g.status, g.body.as_slice()), (200, big.as_slice()), "{g:?}");

    // Keys: 1024 bytes is fine, 1025 is 414; the length is of the decoded key.
    let k1024 = vec![b'k'; 1024];
    let k1025 = vec![b'k'; 1025];
    let r = c.kv(1, "PUT", &k1024).body(b"long key").send();
    assert_eq!(r.status, 204, "1024-byte key: {r:?}");
    let g = c.kv(2, "GET", &k1024).send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"long key"[..]), "{g:?}");
    for m in ["PUT", "GET", "DELETE"] {
        let req = c.kv(1, m, &k1025);
        let r = if m == "PUT" { req.body(b"x").send() } else { req.send() };
        assert_json_error(&r, 414);
        assert_kv_headers(&c, &r, 0);
    }

    let e1024: Vec<u8> = (0..1024u32).map(|i| 0x80 | (i % 64) as u8).collect();
    let r = c
        .raw(0, "PUT", &format!("/kv/{}", encode_all(&e1024)))
        .body(b"encoded")
        .send();
    assert_eq!(r.status, 204, "1024-byte percent-encoded key: {r:?}");
    let g = c.kv(2, "GET", &e1024).send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"encoded"[..]), "{g:?}");
    let mut e1025 = e1024.clone();
    e1025.push(0);
    let r = c
        .raw(0, "PUT", &format!("/kv/{}", encode_all(&e1025)))
        .body(b"x")
        .send();
    assert_json_error(&r, 414);

    for i in 0..3 {
        assert_eq!(
            c.get(i, "/health").status,
            200,
            "{} unhealthy after bad input",
            node_id(i)
        );
    }
}

// ---------------------------------------------------------------------------
// Quorum
// ---------------------------------------------------------------------------

#[test]
fn quorum_with_one_node_of_three_down() {
    let mut c = start3();
    let r = c.kv(0, "PUT", b"before").query("w", "3").body(b"old").send();
    assert_eq!(r.status, 204, "{r:?}");
    c.kill(2);

    let check = |round: &str| {
        // w=3 cannot be met with two live nodes (N=3: all three are replicas).
        let r = c
            .kv(0, "PUT", format!("w3-{round}").as_bytes())
            .query("w", "3")
            .body(b"x")
            .send();
        assert_json_error(&r, 503);
        let n = assert_kv_headers(&c, &r, 0);
        assert!(n < 3, "503 yet X-Dynamo-Replicas={n}: {r:?}");
        let d = c
            .kv(1, "DELETE", format!("del-{round}").as_bytes())
            .query("w", "3")
            .send();
        assert_json_error(&d, 503);

        let key = format!("w2-{round}");
        let r = c.kv(1, "PUT", key.as_bytes()).query("w", "2").body(b"y").send();
        assert_eq!(r.status, 204, "w=2 with two live nodes: {r:?}");
        assert_kv_headers(&c, &r, 2);
        let r = c
            .kv(0, "PUT", key.as_bytes())
            .ctx(r.context().as_deref())
            .body(b"y2")
            .send();
        assert_eq!(r.status, 204, "default w=2 with two live nodes: {r:?}");

        let g = c.kv(0, "GET", key.as_bytes()).query("r", "3").send();
        assert_json_error(&g, 503);
        assert_kv_headers(&c, &g, 0);
        let g = c.kv(1, "GET", key.as_bytes()).query("r", "2").send();
        assert_eq!((g.status, g.body.as_slice()), (200, &b"y2"[..]), "{g:?}");
        assert_kv_headers(&c, &g, 2);
        let g = c.kv(0, "GET", b"before").send();
        assert_eq!((g.status, g.body.as_slice()), (200, &b"old"[..]), "{g:?}");
    };

    // Right after the kill, before anyone noticed ...
    check("early");
    // ... and once the failure detector has seen it.
    poll("node3 seen as not up by node1", Duration::from_secs(15), || {
        let s = c.status(0);
        let m = s["members"]
            .as_array()?
            .iter()
            .find(|m| m["node_id"] == "node3")?
            .clone();
        (m["status"] == "suspect" || m["status"] == "down").then_some(())
    });
    check("late");
}

// ---------------------------------------------------------------------------
// Operations API
// ---------------------------------------------------------------------------

fn check_status_doc(c: &Cluster, i: usize, s: &Value) {
    assert_eq!(string(s, "node_id"), node_id(i), "{s}");
    assert!(!string(s, "version").is_empty(), "{s}");
    assert!(num(s, "uptime_s") >= 0.0, "{s}");
    assert_eq!((uint(s, "n"), uint(s, "r"), uint(s, "w")), (N, R, W), "{s}");
    assert_eq!(uint(s, "partitions"), PARTITIONS, "{s}");

    let members = field(s, "members").as_array().unwrap_or_else(|| panic!("members: {s}"));
    assert_eq!(members.len(), c.len(), "{s}");
    let mut owned = 0;
    let mut replicated = 0;
    for (j, id) in c.node_ids().iter().enumerate() {
        let m = members
            .iter()
            .find(|m| m["node_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing from members: {s}"));
        assert_eq!(string(m, "peer_addr"), c.peer_addr(j), "{s}");
        assert_eq!(string(m, "http_addr"), c.http_addr(j), "{s}");
        assert_eq!(string(m, "status"), "up", "{s}");
        owned += uint(m, "partitions_owned");
        replicated += uint(m, "partitions_replicated");
        let seen = num(m, "last_seen_ms");
        assert!(seen >= 0.0, "{s}");
        if j == i {
            assert_eq!(seen, 0.0, "last_seen_ms of itself must be 0: {s}");
        }
    }
    assert_eq!(owned, PARTITIONS, "partitions_owned must sum to Q: {s}");
    assert_eq!(
        replicated,
        PARTITIONS * N.min(c.len() as u64),
        "partitions_replicated sum: {s}"
    );

    num(s, "storage.keys");
    num(s, "storage.bytes");
    num(s, "hints.pending");
    num(s, "hints.delivered");
    num(s, "anti_entropy.exchanges");
    num(s, "anti_entropy.keys_repaired");
    let last = field(s, "anti_entropy.last_exchange_ms");
    assert!(last.is_null() || last.is_number(), "{s}");
    for op in ["get", "put", "delete"] {
        for f in ["count", "errors", "p50_ms", "p99_ms"] {
            num(s, &format!("requests.{op}.{f}"));
        }
    }
}

#[test]
fn health_and_status() {
    let c = start3();
    for i in 0..3 {
        let h = c.get(i, "/health");
        assert_eq!(h.status, 200, "{h:?}");
        assert_eq!(h.json(), serde_json::json!({"status": "ok"}), "{h:?}");
    }

    // Some traffic, through every node.
    for i in 0..3 {
        let key = format!("status-{i}");
        let r = c
            .kv(i, "PUT", key.as_bytes())
            .query("w", "3")
            .body(b"0123456789")
            .send();
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(c.kv(i, "GET", key.as_bytes()).send().status, 200);
        assert_eq!(c.kv(i, "DELETE", b"status-gone").send().status, 204);
    }

    let mut puts = 0.0;
    let mut gets = 0.0;
    let mut deletes = 0.0;
    for i in 0..3 {
        let s = c.status(i);
        check_status_doc(&c, i, &s);
        // Every node is a replica of every key and the writes were w=3.
        assert!(num(&s, "storage.keys") >= 3.0, "{s}");
        puts += num(&s, "requests.put.count");
        gets += num(&s, "requests.get.count");
        deletes += num(&s, "requests.delete.count");
    }
    assert!(
        puts >= 3.0 && gets >= 3.0 && deletes >= 3.0,
        "request counts {puts} {gets} {deletes}"
    );
}

#[test]
fn status_of_a_two_node_cluster() {
    // Fewer members than N: each partition is replicated on both nodes.
    let c = Cluster::start(2, Opts::default());
    for i in 0..2 {
        check_status_doc(&c, i, &c.status(i));
    }
    for i in 0..2 {
        let s = c.status(i);
        for m in s["members"].as_array().unwrap() {
            assert_eq!(uint(m, "partitions_replicated"), PARTITIONS, "{s}");
        }
    }
}

#[test]
fn admin_local_shows_every_replica() {
    let c = start3();

    // Nothing stored: 200 with an empty list.
    for i in 0..3 {
        assert!(local_versions(&c.admin_local(i, b"nothing-here")).is_empty());
    }

    let r = c.kv(0, "PUT", b"replicated").query("w", "3").body(b"value-a").send();
    assert_eq!(r.status, 204, "{r:?}");
    assert_kv_headers(&c, &r, 3);
    for i in 0..3 {
        let doc = c.admin_local(i, b"replicated");
        assert_eq!(local_versions(&doc), vec![v("value-a")], "{}: {doc}", node_id(i));
        let clock = doc["versions"][0]["clock"].as_object().unwrap();
        assert!(!clock.is_empty(), "a written version has a non-empty clock: {doc}");
        // Clock entries are server (coordinator) ids.
        let text = serde_json::to_string(clock).unwrap();
        assert!(
            c.node_ids().iter().any(|id| text.contains(id.as_str())),
            "clock names no server id: {doc}"
        );
    }

    // Superseded with its context: every replica drops the old version.
    let r = c
        .kv(1, "PUT", b"replicated")
        .ctx(r.context().as_deref())
        .query("w", "3")
        .body(b"value-b")
        .send();
    assert_eq!(r.status, 204, "{r:?}");
    for i in 0..3 {
        let doc = c.admin_local(i, b"replicated");
        assert_eq!(local_versions(&doc), vec![v("value-b")], "{}: {doc}", node_id(i));
    }

    // Concurrent blind writes: every replica keeps both.
    let key = [0u8, b'/', 0xff];
    for i in [0, 2] {
        let r = c
            .kv(i, "PUT", &key)
            .query("w", "3")
            .body(format!("w{i}").as_bytes())
            .send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    for i in 0..3 {
        let doc = c.admin_local(i, &key);
        assert_eq!(local_versions(&doc), vec![v("w0"), v("w2")], "{}: {doc}", node_id(i));
    }

    // A w=3 delete: every replica holds the tombstone (or, once anti-entropy
    // has shown all replicas hold it, nothing at all).
    let ctx = c.kv(0, "GET", b"replicated").send().context().unwrap();
    let d = c.kv(2, "DELETE", b"replicated").ctx(Some(&ctx)).query("w", "3").send();
    assert_eq!(d.status, 204, "{d:?}");
    for i in 0..3 {
        let local = local_versions(&c.admin_local(i, b"replicated"));
        assert!(local.is_empty() || local == vec![None], "{}: {local:?}", node_id(i));
    }
}
