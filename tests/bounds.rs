//! Bounds: nothing a client or a peer sends can exhaust a node or lose its
//! data (SPEC §3 errors, §5). Each test sends the bad input, checks the
//! clear error, and checks the node still serves and still has its data.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Write through the one node of a one-node cluster (N=3 in the harness,
/// so only w=1/r=1 can succeed there).
fn put1(c: &Cluster, key: &[u8], value: &[u8]) {
    let r = c.kv(0, "PUT", key).query("w", "1").body(value).send();
    assert_eq!(r.status, 204, "{r:?}");
}

/// The node still answers and still has `key` = `value`.
fn still_serving(c: &Cluster, key: &[u8], value: &[u8]) {
    let g = c.kv(0, "GET", key).query("r", "1").send();
    assert_eq!((g.status, g.body.as_slice()), (200, value), "{g:?}");
}

/// Read what the server sends until it closes (bounded).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[test]
fn siblings_are_capped_with_a_clear_error_and_nothing_is_lost() {
    let c = Cluster::start(3, Opts::default());
    for i in 0..64 {
        let r = c.kv(i % 3, "PUT", b"crowded").body(format!("v{i}").as_bytes()).send();
        assert_eq!(r.status, 204, "blind write {i}: {r:?}");
    }
    let r = c.kv(0, "PUT", b"crowded").body(b"one too many").send();
    assert_json_error(&r, 409);
    let g = c.kv(1, "GET", b"crowded").query("r", "3").send();
    assert_eq!(g.status, 300, "{g:?}");
    assert_eq!(g.json()["siblings"].as_array().map(Vec::len), Some(64), "all 64 kept");
    // Resolving with the context is always possible.
    let r = c
        .kv(2, "PUT", b"crowded")
        .ctx(g.context().as_deref())
        .body(b"resolved")
        .send();
    assert_eq!(r.status, 204, "{r:?}");
    let g = c.kv(0, "GET", b"crowded").send();
    assert_eq!((g.status, g.body.as_slice()), (200, &b"resolved"[..]), "{g:?}");
    let metrics = c.get(0, "/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dynamo_sibling_cap_refusals_total") && l.ends_with(" 1")),
        "the refusal is counted"
    );
}

#[test]
fn a_client_trickling_its_body_is_cut_off_and_nothing_is_written() {
    let c = Cluster::start(1, Opts::default());
    put1(&c, b"kept", b"value");
    let mut s = TcpStream::connect(c.http_addr(0)).expect("connect");
    s.write_all(b"PUT /kv/trickle?w=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("write");
    // The body deadline is five request timeouts (1 s in the harness).
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(15));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?} after {took:?}");
    assert!(took < Duration::from_secs(10), "cut off only after {took:?}");
    let g = c.kv(0, "GET", b"trickle").query("r", "1").send();
    assert_eq!(g.status, 404, "{g:?}");
    still_serving(&c, b"kept", b"value");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let c = Cluster::start(1, Opts::default());
    put1(&c, b"kept", b"value");
    let mut s = TcpStream::connect(c.http_addr(0)).expect("connect");
    s.write_all(b"GET /kv/kept HTTP/1.1\r\nHost: x\r\n").expect("write");
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(15));
    assert!(
        took < Duration::from_secs(10),
        "a slow client held its connection for {took:?}"
    );
    still_serving(&c, b"kept", b"value");
}

#[test]
fn oversized_headers_are_refused() {
    let c = Cluster::start(1, Opts::default());
    put1(&c, b"kept", b"value");
    let huge = "a".repeat(200 * 1024);
    let r = try_http(
        "GET",
        &c.url(0, "/kv/kept"),
        &[("X-Big", huge.as_str())],
        None,
        Duration::from_secs(5),
    );
    // The server answers with an error, or simply closes the connection.
    if let Ok(r) = r {
        assert!(r.status == 431 || r.status == 400 || r.status == 413, "{r:?}");
    }
    still_serving(&c, b"kept", b"value");
}

#[test]
fn garbage_and_oversized_frames_on_the_peer_port_are_dropped() {
    let c = Cluster::start(1, Opts::default());
    put1(&c, b"kept", b"value");
    // A length prefix of 4 GiB: refused before any allocation.
    let mut s = TcpStream::connect(c.peer_addr(0)).expect("connect");
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).expect("write");
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(answer.is_empty(), "no answer to an oversized frame");
    // A well-sized frame of garbage.
    let mut s = TcpStream::connect(c.peer_addr(0)).expect("connect");
    let mut frame = 64u32.to_be_bytes().to_vec();
    frame.extend((0..64u8).map(|b| b.wrapping_mul(37)));
    s.write_all(&frame).expect("write");
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(answer.is_empty(), "no answer to garbage");
    still_serving(&c, b"kept", b"value");
}
