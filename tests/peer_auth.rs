//! The cluster secret: peers prove they hold it before any message is
//! accepted (SPEC §5). A node with another secret, or none, cannot join,
//! gossip, read or write; a recorded handshake cannot be replayed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use dynamo_core::auth;
use dynamo_core::wire::{Frame, PeerRequest, PeerResponse};

fn members_seen_by(c: &Cluster, i: usize) -> Vec<String> {
    c.status(i)["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["node_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Start 2 nodes sharing a secret, and a third seeded with them that has
/// `third` as its secret (or none).
fn cluster_with_intruder(third: Option<&str>) -> Cluster {
    let mut c = Cluster::spawn_only(2, Opts::args(&["--cluster-secret", "s3cret"]));
    let extra: Vec<&str> = third.map(|s| vec!["--cluster-secret", s]).unwrap_or_default();
    c.add_node_without_cluster_args(&extra);
    c.wait_healthy(0);
    c.wait_healthy(1);
    c
}

fn assert_kept_out(c: &Cluster) {
    // The two honest nodes form a cluster; the intruder never joins it.
    poll("node1 and node2 together", Duration::from_secs(20), || {
        (members_seen_by(c, 0).len() == 2).then_some(())
    });
    let r = c.kv(0, "PUT", b"secret-key").query("w", "2").body(b"v").send();
    assert_eq!(r.status, 204, "{r:?}");
    for _ in 0..10 {
        assert_eq!(members_seen_by(c, 0), vec!["node1".to_string(), "node2".to_string()]);
        let h = try_http("GET", &c.url(2, "/health"), &[], None, Duration::from_secs(2));
        assert!(h.is_ok_and(|h| h.status == 503), "the intruder must not serve");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.logs().contains("refused peer connection"), "the refusal is logged");
}

#[test]
fn a_node_with_another_secret_cannot_join() {
    let c = cluster_with_intruder(Some("wrong"));
    assert_kept_out(&c);
}

#[test]
fn a_node_without_the_secret_cannot_join() {
    let c = cluster_with_intruder(None);
    assert_kept_out(&c);
}

fn write_frame(stream: &mut TcpStream, frame: &Frame) -> Vec<u8> {
    let body = frame.encode().expect("encodes");
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend(body);
    stream.write_all(&bytes).expect("write");
    bytes
}

fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Frame::decode(&body).ok()
}

#[test]
fn a_recorded_handshake_cannot_be_replayed() {
    let c = Cluster::start(1, Opts::args(&["--cluster-secret", "s3cret"]));
    let connect = || {
        let s = TcpStream::connect(c.peer_addr(0)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        s
    };
    // An honest handshake, recorded.
    let mut honest = connect();
    let client_nonce = vec![7u8; auth::NONCE_LEN];
    let hello = write_frame(
        &mut honest,
        &Frame::Hello {
            nonce: client_nonce.clone(),
        },
    );
    let Some(Frame::Challenge { nonce, proof }) = read_frame(&mut honest) else {
        panic!("no challenge");
    };
    assert!(auth::verify_server(b"s3cret", &client_nonce, &nonce, &proof));
    let proof_frame = write_frame(
        &mut honest,
        &Frame::Proof {
            proof: auth::client_proof(b"s3cret", &nonce, &client_nonce),
        },
    );
    write_frame(
        &mut honest,
        &Frame::Request {
            id: 1,
            body: PeerRequest::Ping,
        },
    );
    assert!(matches!(
        read_frame(&mut honest),
        Some(Frame::Response {
            id: 1,
            body: PeerResponse::Pong
        })
    ));

    // The same bytes on a new connection: the server's nonce is new, so the
    // recorded proof no longer fits, and nothing is served.
    let mut replay = connect();
    replay.write_all(&hello).expect("write");
    assert!(matches!(read_frame(&mut replay), Some(Frame::Challenge { .. })));
    replay.write_all(&proof_frame).expect("write");
    let _ = replay.write_all(&{
        let body = Frame::Request {
            id: 1,
            body: PeerRequest::Ping,
        }
        .encode()
        .expect("encodes");
        let mut b = (body.len() as u32).to_be_bytes().to_vec();
        b.extend(body);
        b
    });
    assert!(
        read_frame(&mut replay).is_none(),
        "a replayed handshake must not be served"
    );

    // And a peer that skips the handshake gets nothing either.
    let mut rude = connect();
    write_frame(
        &mut rude,
        &Frame::Request {
            id: 1,
            body: PeerRequest::Ping,
        },
    );
    assert!(read_frame(&mut rude).is_none());
}
