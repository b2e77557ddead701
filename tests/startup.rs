//! Starting a node (SPEC §2): settings from a config file, the environment
//! and flags (flag beats env beats file beats default), and bad configs that
//! stop the node at start with one line on stderr and a non-zero exit.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use common::*;

/// Flags for a one-node cluster on `block`'s first address.
fn node_flags(block: &AddrBlock, data_dir: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--node-id".into(),
        "solo".into(),
        "--http-addr".into(),
        block.http_addr(0),
        "--peer-addr".into(),
        block.peer_addr(0),
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
    ]
}

/// Run a node that must refuse to start: it exits (within a bound) with a
/// non-zero status and exactly one non-empty line on stderr, which is
/// returned. `RUST_LOG` is not set, so only the failure itself is printed.
fn expect_refusal(tmp: &TempDir, name: &str, args: Vec<String>, env: Vec<(String, String)>) -> String {
    let mut p = Proc::new(name, tmp.path(), args, env);
    p.spawn();
    let st: Option<ExitStatus> = p.wait_exit(EXIT_TIMEOUT);
    let st = st.unwrap_or_else(|| {
        panic!(
            "{name}: still running {EXIT_TIMEOUT:?} after start; a bad config must stop it\n{}",
            p.tails(40)
        )
    });
    assert!(
        !st.success(),
        "{name}: a bad config must exit non-zero, got {st:?}\n{}",
        p.tails(40)
    );
    assert!(
        st.code().is_some(),
        "{name}: must exit, not die of a signal ({st:?})\n{}",
        p.tails(40)
    );
    let stderr = p.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{name}: want exactly one line on stderr naming the problem, got:\n{stderr}"
    );
    lines[0].to_string()
}

#[test]
fn read_quorum_larger_than_n_is_refused() {
    let tmp = TempDir::new("r-gt-n");
    let block = AddrBlock::next();
    let mut args = node_flags(&block, &tmp.path().join("data"));
    args.extend(["--n", "3", "--r", "4"].map(String::from));
    expect_refusal(&tmp, "r4", args, vec![]);

    let mut args = node_flags(&block, &tmp.path().join("data"));
    args.extend(["--n", "2", "--w", "3"].map(String::from));
    expect_refusal(&tmp, "w3", args, vec![]);

    // Through the environment too.
    let args = node_flags(&block, &tmp.path().join("data"));
    expect_refusal(&tmp, "env-r", args, vec![("DYNAMO_R".into(), "5".into())]);
}

#[test]
fn unknown_key_in_config_file_is_refused() {
    let tmp = TempDir::new("unknown-key");
    let block = AddrBlock::next();
    let file = tmp.path().join("node.toml");
    fs::write(&file, "n = 3\nr = 2\nw = 2\nbogus_setting_xyz = 7\n").unwrap();
    let mut args = node_flags(&block, &tmp.path().join("data"));
    args.extend(["--config".to_string(), file.to_string_lossy().into_owned()]);
    let line = expect_refusal(&tmp, "bogus", args, vec![]);
    assert!(
        line.contains("bogus_setting_xyz"),
        "the line must name the unknown key: {line:?}"
    );
}

#[test]
fn taken_http_port_is_refused() {
    let tmp = TempDir::new("port-taken");
    let block = AddrBlock::next();
    let _squatter = TcpListener::bind(block.http_addr(0)).expect("bind squatter");
    let args = node_flags(&block, &tmp.path().join("data"));
    let line = expect_refusal(&tmp, "http-taken", args, vec![]);
    assert!(line.contains("8000"), "the line must name the taken address: {line:?}");
}

#[test]
fn taken_peer_port_is_refused() {
    let tmp = TempDir::new("peer-taken");
    let block = AddrBlock::next();
    let _squatter = TcpListener::bind(block.peer_addr(0)).expect("bind squatter");
    let args = node_flags(&block, &tmp.path().join("data"));
    let line = expect_refusal(&tmp, "peer-taken", args, vec![]);
    assert!(line.contains("9000"), "the line must name the taken address: {line:?}");
}

#[test]
fn unusable_data_dir_is_refused() {
    let tmp = TempDir::new("bad-data-dir");
    let block = AddrBlock::next();
    let file = tmp.path().join("a-regular-file");
    fs::write(&file, b"not a directory").unwrap();
    let args = node_flags(&block, &file.join("data"));
    expect_refusal(&tmp, "bad-dir", args, vec![]);
}

/// A positive control for the refusals above: a config file is read, and the
/// layers apply in order flag > env > file > default.
#[test]
fn config_file_env_and_flags_layer_in_order() {
    let tmp = TempDir::new("config-layers");
    let block = AddrBlock::next();
    let data = tmp.path().join("data");
    let file = tmp.path().join("node.toml");
    fs::write(
        &file,
        format!(
            "node_id = \"from-file\"\n\
             http_addr = \"{}\"\n\
             peer_addr = \"{}\"\n\
             data_dir = \"{}\"\n\
             seeds = []\n\
             r = 1\n\
             w = 1\n\
             partitions = 8\n\
             request_timeout_ms = 1000\n\
             gossip_interval_ms = 100\n\
             max_value_bytes = 100\n",
            block.http_addr(0),
            block.peer_addr(0),
            data.display()
        ),
    )
    .unwrap();

    let args = vec![
        "serve".to_string(),
        "--config".into(),
        file.to_string_lossy().into_owned(),
        "--partitions".into(),
        "16".into(),
    ];
    let env = vec![
        ("RUST_LOG".to_string(), "info".to_string()),
        ("DYNAMO_W".to_string(), "3".to_string()),
        ("DYNAMO_PARTITIONS".to_string(), "12".to_string()),
    ];
    let mut p = Proc::new("layers", tmp.path(), args, env);
    p.spawn();
    let url = |path: &str| format!("http://{}{}", block.http_addr(0), path);
    poll_healthy(&mut p, &url("/health"));

    let s = http("GET", &url("/status"), &[], None).json();
    assert_eq!(string(&s, "node_id"), "from-file", "file sets node_id: {s}");
    assert_eq!(uint(&s, "n"), 3, "default n: {s}");
    assert_eq!(uint(&s, "r"), 1, "file beats default: {s}");
    assert_eq!(uint(&s, "w"), 3, "env beats file: {s}");
    assert_eq!(uint(&s, "partitions"), 16, "flag beats env and file: {s}");
    let members = field(&s, "members").as_array().unwrap();
    assert_eq!(
        members.len(),
        1,
        "no seeds and an empty data dir: a one-node cluster: {s}"
    );
    assert_eq!(uint(&members[0], "partitions_owned"), 16, "{s}");
    // max_value_bytes from the file.
    let r = http("PUT", &url("/kv/big"), &[], Some(&[0u8; 101]));
    assert_json_error(&r, 413);
    drop(p);

    // DYNAMO_CONFIG names the file like --config.
    let block2 = AddrBlock::next();
    let file2 = tmp.path().join("node2.toml");
    fs::write(
        &file2,
        format!(
            "node_id = \"via-env\"\nhttp_addr = \"{}\"\npeer_addr = \"{}\"\ndata_dir = \"{}\"\nr = 1\nw = 1\n",
            block2.http_addr(0),
            block2.peer_addr(0),
            tmp.path().join("data2").display()
        ),
    )
    .unwrap();
    let env = vec![("DYNAMO_CONFIG".to_string(), file2.to_string_lossy().into_owned())];
    let mut p2 = Proc::new("config-env", tmp.path(), vec!["serve".into()], env);
    p2.spawn();
    let url2 = format!("http://{}", block2.http_addr(0));
    poll_healthy(&mut p2, &format!("{url2}/health"));
    let s = http("GET", &format!("{url2}/status"), &[], None).json();
    assert_eq!(string(&s, "node_id"), "via-env", "{s}");
    // A one-node cluster with w=1 accepts writes.
    let r = http("PUT", &format!("{url2}/kv/k"), &[], Some(b"v"));
    assert_eq!(r.status, 204, "{r:?}");
}

fn poll_healthy(p: &mut Proc, url: &str) {
    let mut last = String::new();
    let ok = {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(st) = p.try_exit() {
                panic!("{} exited at start ({st:?})\n{}", p.name, p.tails(40));
            }
            match try_http("GET", url, &[], None, Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => break true,
                Ok(r) => last = format!("{r:?}"),
                Err(e) => last = e,
            }
            if std::time::Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    };
    assert!(
        ok,
        "{} not healthy within {READY_TIMEOUT:?}: {last}\n{}",
        p.name,
        p.tails(40)
    );
}
