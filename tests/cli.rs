//! The client CLI (SPEC §4: `dynamo status | get | put | delete | leave |
//! remove`) run as a real process against a real cluster of `dynamo`
//! processes: output, exit codes, `--json`, `--node` before and after the
//! subcommand, `DYNAMO_NODE`, `DYNAMO_CLIENT_TOKEN`, and the contexts that
//! make `put` and `delete` supersede what they saw.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Bound for one CLI run (its own request timeout is far below).
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit codes documented in `dynamo --help`.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const USAGE: i32 = 2;
const FAILED: i32 = 3;
const REFUSED: i32 = 4;

/// What one CLI run produced.
struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    what: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Exit 0.
    fn ok(self) -> Out {
        assert_eq!(self.code, OK, "want success: {self:?}");
        self
    }

    /// Exit `code`, nothing on stdout, exactly one line on stderr.
    fn fails(self, code: i32) -> Out {
        assert_eq!(self.code, code, "want exit {code}: {self:?}");
        assert!(self.stdout.is_empty(), "a failure printed to stdout: {self:?}");
        assert_eq!(
            self.stderr.trim_end_matches('\n').lines().count(),
            1,
            "want one line on stderr: {self:?}"
        );
        assert!(self.stderr.ends_with('\n'), "stderr line not terminated: {self:?}");
        self
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}; stdout={:?} stderr={:?}",
            self.what,
            self.code,
            self.text(),
            self.stderr
        )
    }
}

/// Run `dynamo ARGS` with only `env` among the `DYNAMO_*` variables, `stdin`
/// piped in, bounded by [`CLI_TIMEOUT`].
fn dynamo_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Out {
    let what = format!("dynamo {}", args.join(" "));
    let mut cmd = Command::new(dynamo_bin());
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("DYNAMO_")) {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let writer = stdin.map(|input| {
        let input = input.to_vec();
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned();
    Out {
        code: status
            .code()
            .unwrap_or_else(|| panic!("{what} was killed by a signal: {status:?}")),
        stdout,
        stderr,
        what,
    }
}

fn dynamo(args: &[&str]) -> Out {
    dynamo_env(args, &[], None)
}

fn node_url(c: &Cluster, i: usize) -> String {
    format!("http://{}", c.http_addr(i))
}

fn start3() -> Cluster {
    Cluster::start(3, Opts::default())
}

// ---------------------------------------------------------------------------

#[test]
fn put_get_delete_round_trip_through_different_nodes() {
    let c = start3();
    let (n0, n1, n2) = (node_url(&c, 0), node_url(&c, 1), node_url(&c, 2));

    // --node before the subcommand.
    let put = dynamo(&["--node", &n0, "put", "greeting", "hello world"]).ok();
    assert!(put.text().contains("greeting"), "{put:?}");
    // --node after it.
    let got = dynamo(&["get", "greeting", "--node", &n1]).ok();
    assert_eq!(
        got.stdout, b"hello world",
        "exact bytes, no newline added for a pipe: {got:?}"
    );
    // DYNAMO_NODE.
    let got = dynamo_env(&["get", "greeting"], &[("DYNAMO_NODE", &n2)], None).ok();
    assert_eq!(got.stdout, b"hello world", "{got:?}");

    // The value really is there, under that key, for plain HTTP clients.
    let r = c.kv(2, "GET", b"greeting").send();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]), "{r:?}");

    // A key that needs percent-encoding stays one key.
    dynamo(&["put", "a/b c?d#e%", "odd", "--node", &n0]).ok();
    let r = c.kv(1, "GET", b"a/b c?d#e%").send();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"odd"[..]), "{r:?}");
    assert_eq!(dynamo(&["get", "a/b c?d#e%", "--node", &n2]).ok().stdout, b"odd");

    // Delete through a third node; then the key is gone everywhere.
    let del = dynamo(&["--node", &n2, "delete", "greeting"]).ok();
    assert!(del.text().contains("deleted"), "{del:?}");
    for n in [&n0, &n1, &n2] {
        let miss = dynamo(&["get", "greeting", "--node", n]).fails(NOT_FOUND);
        assert!(miss.stderr.contains("not found"), "{miss:?}");
    }
    let r = c.kv(0, "GET", b"greeting").send();
    assert_eq!(r.status, 404, "after the CLI delete: {r:?}");
    // The delete saw the value (it read the context first), so no sibling
    // survives it: a later plain put makes a single version.
    dynamo(&["put", "greeting", "again", "--node", &n1]).ok();
    let r = c.kv(2, "GET", b"greeting").send();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"again"[..]), "{r:?}");
}

#[test]
fn exit_codes_and_one_line_errors() {
    let c = start3();
    let n0 = node_url(&c, 0);

    // A key that was never written: 1.
    dynamo(&["get", "nothing-here", "--node", &n0]).fails(NOT_FOUND);
    // An address where nothing listens (a free IP of this cluster's block): 3.
    let nobody = format!("http://{}:{}", c.block.ip(7), HTTP_PORT);
    let down = dynamo(&["get", "k", "--node", &nobody]).fails(FAILED);
    assert!(down.stderr.contains(&c.block.ip(7).to_string()), "{down:?}");
    dynamo(&["status", "--node", &nobody]).fails(FAILED);
    dynamo(&["put", "k", "v", "--node", &nobody]).fails(FAILED);
    dynamo(&["put", "k", "v", "--blind", "--node", &nobody]).fails(FAILED);
    // A malformed --node: 2.
    dynamo(&["get", "k", "--node", "http://"]).fails(USAGE);
    dynamo(&["get", "k", "--node", "not a url"]).fails(USAGE);
    dynamo(&["get", "k", "--node", "https://127.0.0.1:1"]).fails(USAGE);
    dynamo(&["get", "k", "--node", &n0, "--timeout", "0"]).fails(USAGE);
    // Bad arguments: 2 (clap's own errors are several lines; only the code
    // matters there).
    assert_eq!(dynamo(&["get"]).code, USAGE);
    assert_eq!(dynamo(&["put", "k"]).code, USAGE);
    assert_eq!(dynamo(&["frobnicate"]).code, USAGE);
    assert_eq!(dynamo(&["get", "k", "--r", "0"]).code, USAGE);
    dynamo(&["get", "", "--node", &n0]).fails(USAGE);
    // The node refuses a quorum above N: 4, with the node's message.
    let refused = dynamo(&["get", "k", "--r", "9", "--node", &n0]).fails(REFUSED);
    assert!(refused.stderr.contains("400"), "{refused:?}");
    dynamo(&["put", "k", "v", "--w", "9", "--node", &n0]).fails(REFUSED);
    // Removing a node that is not a member: 404 (whether or not the node
    // implements removal yet).
    dynamo(&["remove", "no-such-node", "--node", &n0]).fails(NOT_FOUND);
    // The hidden health check.
    assert_eq!(dynamo(&["health", "--node", &n0]).ok().json()["status"], "ok");
    dynamo(&["health", "--node", &nobody]).fails(FAILED);
    // Help documents the exit codes.
    let help = dynamo(&["--help"]).ok().text();
    for needle in ["Exit codes", "not found", "usage", "unreachable", "DYNAMO_NODE"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn json_output_and_node_selection() {
    let c = start3();
    let urls: Vec<String> = (0..3).map(|i| node_url(&c, i)).collect();

    for (i, url) in urls.iter().enumerate() {
        let want = node_id(i);
        let before = dynamo(&["--json", "--node", url, "status"]).ok().json();
        assert_eq!(string(&before, "node_id"), want, "--node before: {before}");
        let after = dynamo(&["status", "--node", url, "--json"]).ok().json();
        assert_eq!(string(&after, "node_id"), want, "--node after: {after}");
        let env = dynamo_env(&["status", "--json"], &[("DYNAMO_NODE", url)], None)
            .ok()
            .json();
        assert_eq!(string(&env, "node_id"), want, "DYNAMO_NODE: {env}");
        let members = field(&env, "members").as_array().expect("members");
        assert_eq!(members.len(), 3, "{env}");
    }
    // The flag beats the environment; the scheme may be left out.
    let flag = dynamo_env(
        &["status", "--json", "--node", &c.http_addr(2)],
        &[("DYNAMO_NODE", &urls[0])],
        None,
    )
    .ok()
    .json();
    assert_eq!(string(&flag, "node_id"), "node3", "{flag}");

    // Readable status: every member, its status and its share.
    let readable = dynamo(&["status", "--node", &urls[1]]).ok().text();
    for i in 0..3 {
        assert!(readable.contains(&node_id(i)), "{readable}");
    }
    assert!(readable.contains("up"), "{readable}");
    assert!(readable.contains("3 members"), "{readable}");

    // put --json: the new context, the coordinator, the replicas.
    let put = dynamo(&["put", "--json", "k", "v1", "--node", &urls[0], "-t", "text/plain"])
        .ok()
        .json();
    assert!(!string(&put, "context").is_empty(), "{put}");
    assert!(c.node_ids().iter().any(|id| id == string(&put, "coordinator")), "{put}");
    assert!(uint(&put, "replicas") >= W, "{put}");
    // get --json: the siblings document even for one version.
    let got = dynamo(&["get", "k", "--json", "--node", &urls[2]]).ok();
    let doc = got.json();
    assert!(!string(&doc, "context").is_empty(), "{doc}");
    let sibs = field(&doc, "siblings").as_array().expect("siblings");
    assert_eq!(sibs.len(), 1, "{doc}");
    assert_eq!(b64_decode(string(&sibs[0], "value")), b"v1", "{doc}");
    assert_eq!(string(&sibs[0], "content_type"), "text/plain", "{doc}");
    // delete --json.
    let del = dynamo(&["--json", "delete", "k", "--node", &urls[1]]).ok().json();
    assert_eq!(field(&del, "found"), &Value::Bool(true), "{del}");
    dynamo(&["get", "k", "--json", "--node", &urls[0]]).fails(NOT_FOUND);
}

#[test]
fn put_supersedes_what_it_read_and_blind_puts_make_siblings() {
    let c = start3();
    let urls: Vec<String> = (0..3).map(|i| node_url(&c, i)).collect();

    // Two CLI puts of one key through different nodes: the second read the
    // first's context, so it supersedes it.
    dynamo(&["put", "colour", "red", "--node", &urls[0]]).ok();
    dynamo(&["put", "colour", "green", "--node", &urls[1]]).ok();
    for i in 0..3 {
        let r = c.kv(i, "GET", b"colour").send();
        assert_eq!(
            (r.status, r.text()),
            (200, "green".to_string()),
            "via {}: {r:?}",
            node_id(i)
        );
    }

    // Two blind puts: neither saw anything, so all three are siblings.
    let blind = dynamo(&["put", "--blind", "colour", "blue", "--node", &urls[1], "--json"])
        .ok()
        .json();
    assert_eq!(field(&blind, "superseded"), &Value::Bool(false), "{blind}");
    dynamo(&["--node", &urls[2], "put", "colour", "--blind", "yellow"]).ok();
    let r = c.kv(0, "GET", b"colour").send();
    assert_eq!(r.status, 300, "{r:?}");
    let (_, sibs) = parse_siblings(&r);
    let want = |vs: &[&str]| {
        let mut v: Vec<Option<Vec<u8>>> = vs.iter().map(|s| Some(s.as_bytes().to_vec())).collect();
        v.sort();
        v
    };
    assert_eq!(values(&sibs), want(&["blue", "green", "yellow"]), "{r:?}");

    // The CLI's get prints the 300 body (and succeeds: the key exists).
    let got = dynamo(&["get", "colour", "--node", &urls[2]]).ok();
    let doc = got.json();
    let listed: Vec<Option<Vec<u8>>> = {
        let mut v: Vec<_> = field(&doc, "siblings")
            .as_array()
            .expect("siblings")
            .iter()
            .map(|s| Some(b64_decode(string(s, "value"))))
            .collect();
        v.sort();
        v
    };
    assert_eq!(listed, want(&["blue", "green", "yellow"]), "{got:?}");

    // A non-blind put resolves them, the value read from stdin, any bytes.
    let bytes: &[u8] = b"purple\0\n\xff\xfe end";
    dynamo_env(&["put", "colour", "-", "--node", &urls[0]], &[], Some(bytes)).ok();
    let r = c.kv(1, "GET", b"colour").send();
    assert_eq!((r.status, r.body.as_slice()), (200, bytes), "{r:?}");
    assert_eq!(dynamo(&["get", "colour", "--node", &urls[2]]).ok().stdout, bytes);

    // An empty value from stdin is a value too.
    dynamo_env(&["put", "empty", "-", "--node", &urls[2]], &[], Some(b"")).ok();
    let r = c.kv(0, "GET", b"empty").send();
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");

    // A delete after concurrent writes supersedes all of them.
    dynamo(&["put", "pair", "a", "--blind", "--node", &urls[0]]).ok();
    dynamo(&["put", "pair", "b", "--blind", "--node", &urls[1]]).ok();
    assert_eq!(c.kv(2, "GET", b"pair").send().status, 300);
    dynamo(&["delete", "pair", "--node", &urls[2]]).ok();
    let r = c.kv(0, "GET", b"pair").send();
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn client_token_is_sent_and_admin_errors_are_reported() {
    // One node (health needs no token; readiness through /status would).
    let c = Cluster::spawn_only(1, Opts::args(&["--client-token", "s3cret"]));
    c.wait_healthy(0);
    let url = node_url(&c, 0);
    let with = [("DYNAMO_NODE", url.as_str()), ("DYNAMO_CLIENT_TOKEN", "s3cret")];
    let wrong = [("DYNAMO_NODE", url.as_str()), ("DYNAMO_CLIENT_TOKEN", "nope")];

    let denied = dynamo_env(&["status"], &[("DYNAMO_NODE", &url)], None).fails(REFUSED);
    assert!(denied.stderr.contains("401"), "{denied:?}");
    dynamo_env(&["status"], &wrong, None).fails(REFUSED);
    let v = dynamo_env(&["status", "--json"], &with, None).ok().json();
    assert_eq!(string(&v, "node_id"), "node1", "{v}");
    // Health needs no token.
    dynamo_env(&["health"], &[("DYNAMO_NODE", &url)], None).ok();

    // The last member cannot leave (409), and a node that does not
    // implement leaving answers 404: either way one line, non-zero.
    let leave = dynamo_env(&["leave"], &with, None);
    let code = leave.code;
    assert!(
        code == REFUSED || code == NOT_FOUND,
        "the last member must not leave: {leave:?}"
    );
    leave.fails(code);
    // Removing yourself is refused (400), or 404 where removal is not built.
    let own = dynamo_env(&["remove", "node1"], &with, None);
    let code = own.code;
    assert!(code == REFUSED || code == NOT_FOUND, "{own:?}");
    own.fails(code);
}

/// The docker-compose deployment's configs (SPEC §6) are valid node configs
/// that form one cluster, and docker-compose.yml uses each of them.
#[test]
fn docker_compose_configs_are_valid() {
    use dynamo_core::config::Config;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("docker-compose.yml");
    let configs: Vec<Config> = (1..=3)
        .map(|i| {
            let path = root.join(format!("config/node{i}.toml"));
            let c = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(c.node_id, format!("node{i}"));
            assert_eq!(c.peer_addr, format!("node{i}:9000"));
            assert_eq!(c.http_addr, "0.0.0.0:8000");
            assert!(c.data_dir.is_some(), "node{i} must keep its data on its volume");
            assert!(
                compose.contains(&format!("./config/node{i}.toml:")),
                "compose does not mount node{i}.toml"
            );
            assert!(
                compose.contains(&format!("800{i}}}:8000")),
                "compose does not publish 800{i}"
            );
            c
        })
        .collect();
    let peers: Vec<String> = configs.iter().map(|c| c.peer_addr.clone()).collect();
    for c in &configs {
        assert_eq!(c.seeds, peers, "{}: every node seeds the whole cluster", c.node_id);
        assert_eq!((c.n, c.r, c.w), (3, 2, 2));
    }
}
