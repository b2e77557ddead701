//! Client tokens (SPEC §5): with `client_token` set, every route but
//! `/health` needs `Authorization: Bearer <token>`, and 401 comes first.

mod common;

use common::*;

#[test]
fn every_route_but_health_needs_the_bearer_token() {
    let c = Cluster::start(3, Opts::args(&["--client-token", "t0ken"]));
    let good = [("Authorization", "Bearer t0ken")];
    let bad = [("Authorization", "Bearer nope")];

    let h = c.http(0, "GET", "/health", &[], None);
    assert_eq!(h.status, 200, "{h:?}");
    for (method, path) in [
        ("GET", "/kv/k"),
        ("PUT", "/kv/k"),
        ("DELETE", "/kv/k"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/ring"),
        ("GET", "/admin/local/k"),
        ("POST", "/admin/leave"),
        ("GET", "/no/such/route"),
    ] {
        let r = c.http(0, method, path, &[], None);
        assert_json_error(&r, 401);
        let r = c.http(0, method, path, &bad, None);
        assert_json_error(&r, 401);
    }
    // 401 comes first: a malformed context and a bad quorum without the
    // token are refused as unauthorized, and change nothing.
    let r = c.http(0, "PUT", "/kv/k?w=9", &[("X-Context", "garbage")], Some(b"x"));
    assert_json_error(&r, 401);

    let r = c.http(0, "PUT", "/kv/k", &good, Some(b"v"));
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.http(1, "GET", "/kv/k", &good, None);
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v"[..]), "{g:?}");
    let s = c.http(2, "GET", "/status", &good, None);
    assert_eq!(s.status, 200, "{s:?}");
}
