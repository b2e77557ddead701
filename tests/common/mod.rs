//! Multi-process test harness for the `dynamo` binary (SPEC §2–§4).
//!
//! Every cluster gets its own loopback address block `127.<a>.<b>.<node>`
//! (a = 10 + pid % 200, b = a per-process counter), HTTP on port 8000 and peer
//! traffic on port 9000 of each node's own IP, so tests never race for ports.
//! Node `i` (0-based index in this API) has node id `node{i+1}` and IP
//! `127.a.b.{i+1}`.
//!
//! Children are SIGKILLed on drop (and get `PR_SET_PDEATHSIG`, so they also die
//! if the test process itself is killed); their stdout/stderr go to files in a
//! per-cluster temp dir whose tails are printed when a test panics.
#![allow(dead_code)]

pub mod inproc;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// Partition count every test cluster is started with.
pub const PARTITIONS: u64 = 16;
pub const N: u64 = 3;
pub const R: u64 = 2;
pub const W: u64 = 2;
pub const HTTP_PORT: u16 = 8000;
pub const PEER_PORT: u16 = 9000;

/// Bound for a cluster (or a restarted node) to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Client-side bound for one HTTP request (the cluster's own request timeout
/// is 1 s, so a healthy node always answers well within this).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for a process to exit after SIGTERM, or after a fatal config error.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// `$DYNAMO_BIN` if set, else `target/<profile>/dynamo` next to this test
/// executable (`target/<profile>/deps/<test>-<hash>`).
pub fn dynamo_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DYNAMO_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "DYNAMO_BIN={} is not a file: build it first: cargo build --bin dynamo",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let bin = profile_dir.join(format!("dynamo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "dynamo binary not found at {}: build it first: cargo build --bin dynamo \
         (or point DYNAMO_BIN at it)",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------
// Addresses and temp dirs
// ---------------------------------------------------------------------------

static BLOCK_COUNTER: AtomicU32 = AtomicU32::new(1);
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(1);

/// A private block of loopback addresses, `127.a.b.(c+1)`, `127.a.b.(c+2)`,
/// ...: `a.b` is unique to this process (from its pid), `c` to the cluster
/// within the process, so concurrent tests never share an address.
#[derive(Clone, Copy, Debug)]
pub struct AddrBlock {
    pub a: u8,
    pub b: u8,
    pub c: u8,
}

/// Nodes a cluster may have.
const NODES_PER_BLOCK: u32 = 8;

impl AddrBlock {
    pub fn next() -> AddrBlock {
        let n = BLOCK_COUNTER.fetch_add(1, Ordering::SeqCst) - 1;
        assert!(
            n < 250 / NODES_PER_BLOCK,
            "this test process used up its loopback address blocks"
        );
        let pid = std::process::id();
        // pid_max is at most 4,194,304 (2^22); 250 × 200 covers 50,000 and
        // wraps beyond, which two tests running at once never share.
        let a = 10 + (pid / 250) % 200;
        let b = pid % 250 + 1;
        AddrBlock {
            a: a as u8,
            b: b as u8,
            c: (n * NODES_PER_BLOCK) as u8,
        }
    }

    /// IP of node `i` (0-based).
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        assert!(
            (i as u32) < NODES_PER_BLOCK,
            "at most {NODES_PER_BLOCK} nodes per cluster"
        );
        Ipv4Addr::new(127, self.a, self.b, self.c + i as u8 + 1)
    }

    pub fn http_addr(&self, i: usize) -> String {
        format!("{}:{}", self.ip(i), HTTP_PORT)
    }

    pub fn peer_addr(&self, i: usize) -> String {
        format!("{}:{}", self.ip(i), PEER_PORT)
    }
}

/// A unique directory under `std::env::temp_dir()`, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "dynamo-it-{}-{}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos,
            tag
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DYNAMO_KEEP_TMP").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// One child process
// ---------------------------------------------------------------------------

/// One `dynamo` process (restartable with the same args and env), with its
/// stdout/stderr appended to log files.
pub struct Proc {
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(name: &str, dir: &Path, args: Vec<String>, env: Vec<(String, String)>) -> Proc {
        Proc {
            name: name.to_string(),
            args,
            env,
            stdout_log: dir.join(format!("{name}.stdout.log")),
            stderr_log: dir.join(format!("{name}.stderr.log")),
            child: None,
        }
    }

    /// Spawn the process (it must not be running).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let mut cmd = Command::new(dynamo_bin());
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(open(&self.stdout_log))
            .stderr(open(&self.stderr_log));
        // Settings inherited from the developer's shell must not leak in.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("DYNAMO_") {
                    cmd.env_remove(k);
                }
            }
        }
        cmd.env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        set_parent_death_signal(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, dynamo_bin().display()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `Some(status)` if the process has exited (it is then reaped and
    /// forgotten), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                self.child = None;
                Some(st)
            }
            Ok(None) => None,
            Err(e) => panic!("try_wait {}: {e}", self.name),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Send `sig` and wait (bounded) for the exit; `None` if it did not exit
    /// in time (it is then SIGKILLed).
    pub fn signal_and_wait(&mut self, sig: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.pid().unwrap_or_else(|| panic!("{} is not running", self.name));
        signal(pid, sig);
        self.wait_exit(timeout)
    }

    /// Wait (bounded) for the process to exit on its own; SIGKILL it and
    /// return `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            self.child.as_ref()?;
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read(&self.stdout_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of stdout and stderr, for failure reports.
    pub fn tails(&self, lines: usize) -> String {
        format!(
            "----- {} args: {}\n----- {} stdout (tail) -----\n{}\n----- {} stderr (tail) -----\n{}\n",
            self.name,
            self.args.join(" "),
            self.name,
            tail(&self.stdout(), lines),
            self.name,
            tail(&self.stderr(), lines)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Children die with the thread that spawned them (each test's own thread),
/// so an aborted test run leaves no orphan nodes behind.
fn set_parent_death_signal(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// Extra options for [`Cluster::start`].
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Appended to every node's command line (must not repeat a flag the
    /// harness already passes).
    pub extra_args: Vec<String>,
    /// Extra environment for every node.
    pub env: Vec<(String, String)>,
}

impl Opts {
    pub fn args(args: &[&str]) -> Opts {
        Opts {
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
        }
    }
}

pub struct Cluster {
    pub block: AddrBlock,
    pub partitions: u64,
    procs: Vec<Proc>,
    /// The seed list every node starts with.
    seeds: String,
    opts: Opts,
    // Declared last: dropped after the processes are killed.
    tmp: TempDir,
}

impl Cluster {
    /// Spawn `k` nodes that all seed each other and wait until they form one
    /// cluster (see [`Cluster::wait_ready`]).
    pub fn start(k: usize, opts: Opts) -> Cluster {
        let c = Cluster::spawn_only(k, opts);
        c.wait_ready();
        c
    }

    /// Spawn `k` nodes without waiting for anything.
    pub fn spawn_only(k: usize, opts: Opts) -> Cluster {
        assert!(k >= 1);
        let block = AddrBlock::next();
        let tmp = TempDir::new("cluster");
        let seeds: Vec<String> = (0..k).map(|i| block.peer_addr(i)).collect();
        let mut c = Cluster {
            block,
            partitions: PARTITIONS,
            procs: Vec::new(),
            seeds: seeds.join(","),
            opts,
            tmp,
        };
        for _ in 0..k {
            c.push_node(&[]);
        }
        for p in c.procs.iter_mut() {
            p.spawn();
        }
        c
    }

    /// Define node `procs.len()` (not started), seeded with the cluster's
    /// first nodes, with `extra` flags on top of the cluster's.
    fn push_node(&mut self, extra: &[&str]) -> usize {
        let i = self.procs.len();
        let id = node_id(i);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            id.clone(),
            "--http-addr".into(),
            self.block.http_addr(i),
            "--peer-addr".into(),
            self.block.peer_addr(i),
            "--data-dir".into(),
            self.tmp.path().join(&id).to_string_lossy().into_owned(),
            "--seeds".into(),
            self.seeds.clone(),
            "--n".into(),
            N.to_string(),
            "--r".into(),
            R.to_string(),
            "--w".into(),
            W.to_string(),
            "--partitions".into(),
            PARTITIONS.to_string(),
            "--request-timeout-ms".into(),
            "1000".into(),
            "--gossip-interval-ms".into(),
            "100".into(),
        ];
        args.extend(self.opts.extra_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env = vec![("RUST_LOG".to_string(), "info".to_string())];
        env.extend(self.opts.env.iter().cloned());
        self.procs.push(Proc::new(&id, self.tmp.path(), args, env));
        i
    }

    /// The `--client-token` the cluster was started with, if any.
    pub fn client_token(&self) -> Option<&str> {
        let args = &self.opts.extra_args;
        args.iter()
            .position(|a| a == "--client-token")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    }

    /// Wait (bounded) for node `i` to exit by itself.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        self.procs[i].wait_exit(timeout)
    }

    /// Start one more node, seeded like the others but without the
    /// cluster's extra flags (e.g. without its `--cluster-secret`).
    pub fn add_node_without_cluster_args(&mut self, extra: &[&str]) -> usize {
        let saved = std::mem::take(&mut self.opts.extra_args);
        let i = self.push_node(extra);
        self.opts.extra_args = saved;
        self.procs[i].spawn();
        i
    }

    /// Start one more node that joins through the existing nodes' seeds;
    /// returns its index. Does not wait.
    pub fn add_node(&mut self, extra: &[&str]) -> usize {
        let i = self.push_node(extra);
        self.procs[i].spawn();
        i
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn node_ids(&self) -> Vec<String> {
        (0..self.len()).map(node_id).collect()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(node_id(i))
    }

    pub fn http_addr(&self, i: usize) -> String {
        self.block.http_addr(i)
    }

    pub fn peer_addr(&self, i: usize) -> String {
        self.block.peer_addr(i)
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        assert!(path.starts_with('/'), "path must start with '/': {path}");
        format!("http://{}{}", self.http_addr(i), path)
    }

    /// Tails of every node's logs.
    pub fn logs(&self) -> String {
        self.procs.iter().map(|p| p.tails(40)).collect::<Vec<_>>().join("")
    }

    // ----- process control -------------------------------------------------

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }

    /// SIGTERM node `i` and wait (bounded) for its exit status.
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        match self.procs[i].signal_and_wait(libc::SIGTERM, EXIT_TIMEOUT) {
            Some(st) => st,
            None => panic!("{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM", node_id(i)),
        }
    }

    /// Start node `i` again (same args, same data dir) without waiting.
    pub fn spawn(&mut self, i: usize) {
        self.procs[i].spawn();
    }

    /// Start node `i` again (same args, same data dir) and wait until it
    /// answers `GET /health` with 200.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i);
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_running()
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].pid()
    }

    /// Panic (with logs) if a node that should run has exited.
    fn check_alive(&self, i: usize) {
        // try_exit needs &mut; peek through a cheap non-reaping check instead.
        if let Some(pid) = self.procs[i].pid() {
            let mut status: libc::c_int = 0;
            // SAFETY: WNOHANG|WNOWAIT only peeks; the child stays reapable.
            let r = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let r = libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                );
                if r == 0 && info.si_pid() != 0 {
                    status = info.si_status();
                    1
                } else {
                    0
                }
            };
            if r == 1 {
                panic!("{} exited unexpectedly (status {status})", node_id(i));
            }
        }
    }

    /// Poll (bounded) until node `i` answers `GET /health` with 200.
    pub fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            self.check_alive(i);
            match try_http("GET", &self.url(i, "/health"), &[], None, Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => return,
                Ok(r) => last = format!("{r:?}"),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not healthy within {READY_TIMEOUT:?}; last answer: {last}",
                    node_id(i)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Poll (bounded by [`READY_TIMEOUT`]) until every node answers
    /// `/health` with 200 and every node's `/status` lists all k members as
    /// `up`, whose `partitions_owned` sum to Q and agree across nodes.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let why = match self.readiness() {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!("cluster of {} not ready within {READY_TIMEOUT:?}: {why}", self.len());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let k = self.len();
        let mut expected_ids = self.node_ids();
        expected_ids.sort();
        let mut reference: Option<Vec<(String, u64)>> = None;
        for i in 0..k {
            self.check_alive(i);
            let t = Duration::from_secs(2);
            let h = try_http("GET", &self.url(i, "/health"), &[], None, t)?;
            if h.status != 200 {
                return Err(format!("{} /health: {h:?}", node_id(i)));
            }
            // A cluster started with a client token wants it on /status.
            let bearer = self.client_token().map(|t| format!("Bearer {t}"));
            let auth: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
            let s = try_http("GET", &self.url(i, "/status"), &auth, None, t)?;
            if s.status != 200 {
                return Err(format!("{} /status: {s:?}", node_id(i)));
            }
            let v: Value = serde_json::from_slice(&s.body)
                .map_err(|e| format!("{} /status is not JSON ({e}): {s:?}", node_id(i)))?;
            let members = v["members"]
                .as_array()
                .ok_or_else(|| format!("{} /status has no members array: {v}", node_id(i)))?;
            let mut owned = Vec::new();
            for m in members {
                let id = m["node_id"].as_str().unwrap_or("?").to_string();
                if m["status"] != "up" {
                    return Err(format!("{} sees {id} as {}", node_id(i), m["status"]));
                }
                let o = m["partitions_owned"]
                    .as_u64()
                    .ok_or_else(|| format!("{} member {id} lacks partitions_owned", node_id(i)))?;
                owned.push((id, o));
            }
            owned.sort();
            let ids: Vec<String> = owned.iter().map(|(id, _)| id.clone()).collect();
            if ids != expected_ids {
                return Err(format!("{} lists members {ids:?}, want {expected_ids:?}", node_id(i)));
            }
            // A cluster forming from seeds may start on a first ring that
            // lacks some members and move them in with a target ring: until
            // that is done, members listed as up may own nothing, and a
            // write can find fewer than N replicas.
            if !v["target_ring_version"].is_null() {
                return Err(format!(
                    "{} is still moving to ring {}",
                    node_id(i),
                    v["target_ring_version"]
                ));
            }
            if let Some((id, _)) = owned.iter().find(|(_, o)| *o == 0) {
                return Err(format!("{} sees {id} owning no partition: {owned:?}", node_id(i)));
            }
            let sum: u64 = owned.iter().map(|(_, o)| o).sum();
            if sum != self.partitions {
                return Err(format!(
                    "{} partitions_owned sum to {sum}, want {}: {owned:?}",
                    node_id(i),
                    self.partitions
                ));
            }
            match &reference {
                None => reference = Some(owned),
                Some(r) if *r != owned => {
                    return Err(format!("ownership views differ: {r:?} vs {} {owned:?}", node_id(i)))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    // ----- HTTP ----------------------------------------------------------------

    /// Any request to node `i`; 4xx/5xx are returned, not errors.
    pub fn http(&self, i: usize, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        http(method, &self.url(i, path), headers, body)
    }

    pub fn get(&self, i: usize, path: &str) -> Resp {
        self.http(i, "GET", path, &[], None)
    }

    /// A `/kv/{key}` request builder against node `i`.
    pub fn kv(&self, i: usize, method: &str, key: &[u8]) -> KvReq<'_> {
        KvReq {
            cluster: self,
            node: i,
            method: method.to_string(),
            path: kv_path(key),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }

    /// A request builder against node `i` for a raw (already encoded) path.
    pub fn raw(&self, i: usize, method: &str, path: &str) -> KvReq<'_> {
        KvReq {
            cluster: self,
            node: i,
            method: method.to_string(),
            path: path.to_string(),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }

    /// PUT with default W; panics unless 204; returns the new context.
    pub fn put_ok(&self, i: usize, key: &[u8], value: &[u8], ctx: Option<&str>) -> String {
        let r = self.kv(i, "PUT", key).ctx(ctx).body(value).send();
        assert_eq!(r.status, 204, "PUT {} via {}: {r:?}", show_key(key), node_id(i));
        r.context()
            .unwrap_or_else(|| panic!("PUT answered 204 without X-Context: {r:?}"))
    }

    /// `GET /status` of node `i` as JSON.
    pub fn status(&self, i: usize) -> Value {
        let r = self.get(i, "/status");
        assert_eq!(r.status, 200, "GET /status on {}: {r:?}", node_id(i));
        r.json()
    }

    /// `GET /admin/local/{key}` of node `i` as JSON.
    pub fn admin_local(&self, i: usize, key: &[u8]) -> Value {
        let r = self.get(i, &format!("/admin/local/{}", encode_key(key)));
        assert_eq!(
            r.status,
            200,
            "GET /admin/local/{} on {}: {r:?}",
            show_key(key),
            node_id(i)
        );
        r.json()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== dynamo node logs ({}) =====\n{}",
                self.tmp.path().display(),
                self.logs()
            );
        }
        for p in self.procs.iter_mut() {
            p.kill();
        }
    }
}

/// Node id of node `i` (0-based): `node{i+1}`.
pub fn node_id(i: usize) -> String {
    format!("node{}", i + 1)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

pub struct KvReq<'a> {
    cluster: &'a Cluster,
    node: usize,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl<'a> KvReq<'a> {
    /// `X-Context: <ctx>` when `Some`.
    pub fn ctx(mut self, ctx: Option<&str>) -> Self {
        if let Some(c) = ctx {
            self.headers.push(("X-Context".into(), c.into()));
        }
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn content_type(self, ct: &str) -> Self {
        self.header("Content-Type", ct)
    }

    pub fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    pub fn body(mut self, b: &[u8]) -> Self {
        self.body = Some(b.to_vec());
        self
    }

    pub fn path(&self) -> String {
        let mut p = self.path.clone();
        for (n, (k, v)) in self.query.iter().enumerate() {
            p.push(if n == 0 { '?' } else { '&' });
            p.push_str(&encode_key(k.as_bytes()));
            p.push('=');
            p.push_str(&encode_key(v.as_bytes()));
        }
        p
    }

    pub fn send(self) -> Resp {
        let url = self.cluster.url(self.node, &self.path());
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // PUT always carries a body (possibly empty) so Content-Length is sent.
        let body = match (&self.body, self.method.as_str()) {
            (Some(b), _) => Some(b.as_slice()),
            (None, "PUT") | (None, "POST") => Some(&[][..]),
            (None, _) => None,
        };
        http(&self.method, &url, &headers, body)
    }
}

/// An HTTP response: status, headers (name as received), body bytes.
#[derive(Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Non-empty `X-Context`.
    pub fn context(&self) -> Option<String> {
        self.header("X-Context")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        write!(f, "HTTP {} {:?} body={:?}", self.status, self.headers, body)
    }
}

/// One request with a fresh agent (no pooled connections survive a node's
/// restart). 4xx/5xx are returned as responses; `Err` only for transport
/// failures.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Resp, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout.min(Duration::from_secs(2)))
        .timeout(timeout)
        .redirects(0)
        .max_idle_connections(0)
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(format!("{method} {url}: {t}")),
    };
    let status = resp.status();
    let mut hdrs = Vec::new();
    for name in resp.headers_names() {
        for v in resp.all(&name) {
            hdrs.push((name.clone(), v.to_string()));
        }
    }
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
    Ok(Resp {
        status,
        headers: hdrs,
        body: bytes,
    })
}

/// [`try_http`] with [`HTTP_TIMEOUT`]; panics on transport errors.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    try_http(method, url, headers, body, HTTP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// Percent-encode every byte that is not RFC 3986 unreserved.
pub fn encode_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len() * 3);
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Percent-encode every byte, unreserved or not.
pub fn encode_all(key: &[u8]) -> String {
    key.iter().map(|b| format!("%{b:02X}")).collect()
}

pub fn kv_path(key: &[u8]) -> String {
    format!("/kv/{}", encode_key(key))
}

pub fn show_key(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(key);
    if s.len() > 60 {
        format!("{}...({} bytes)", &s.chars().take(40).collect::<String>(), key.len())
    } else {
        format!("{s:?}")
    }
}

// ---------------------------------------------------------------------------
// Assertions on the contract
// ---------------------------------------------------------------------------

pub fn b64_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not standard base64 ({e}): {s:?}"))
}

pub fn b64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `status` and a JSON body `{"error": "<kind>", "message": "<sentence>"}`.
pub fn assert_json_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "want {status} with a JSON error: {r:?}");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {r:?}"));
    let err = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no string \"error\": {r:?}"));
    let msg = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no string \"message\": {r:?}"));
    assert!(!err.is_empty() && !msg.is_empty(), "empty error/message: {r:?}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "error Content-Type {ct:?}: {r:?}");
}

/// Every `/kv` response carries `X-Dynamo-Coordinator` (one of the cluster's
/// node ids) and `X-Dynamo-Replicas` (a number, at least `min_replicas`).
pub fn assert_kv_headers(c: &Cluster, r: &Resp, min_replicas: u64) -> u64 {
    let coord = r
        .header("X-Dynamo-Coordinator")
        .unwrap_or_else(|| panic!("no X-Dynamo-Coordinator: {r:?}"));
    assert!(
        c.node_ids().iter().any(|id| id == coord),
        "X-Dynamo-Coordinator {coord:?} is not a node id: {r:?}"
    );
    let n: u64 = r
        .header("X-Dynamo-Replicas")
        .unwrap_or_else(|| panic!("no X-Dynamo-Replicas: {r:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("X-Dynamo-Replicas is not a number ({e}): {r:?}"));
    assert!(n >= min_replicas, "X-Dynamo-Replicas {n} < {min_replicas}: {r:?}");
    n
}

/// One entry of a siblings document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sibling {
    /// `None` for a deleted sibling (`"value": null`).
    pub value: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

/// Parse `{"context": "<token>", "siblings": [...]}` from a 200/300 answer,
/// checking the JSON Content-Type and that the `X-Context` header carries the
/// same token. Siblings come back sorted.
pub fn parse_siblings(r: &Resp) -> (String, Vec<Sibling>) {
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "siblings Content-Type {ct:?}: {r:?}"
    );
    let v = r.json();
    let ctx = v["context"]
        .as_str()
        .unwrap_or_else(|| panic!("no string \"context\": {r:?}"))
        .to_string();
    assert!(!ctx.is_empty(), "empty context: {r:?}");
    assert_eq!(
        r.header("X-Context"),
        Some(ctx.as_str()),
        "X-Context header != body context: {r:?}"
    );
    let list = v["siblings"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"siblings\" array: {r:?}"));
    let mut out: Vec<Sibling> = list
        .iter()
        .map(|s| {
            let value = match &s["value"] {
                Value::Null => None,
                Value::String(b) => Some(b64_decode(b)),
                other => panic!("sibling value {other} is neither base64 nor null: {r:?}"),
            };
            let content_type = s.get("content_type").and_then(Value::as_str).map(String::from);
            if value.is_some() {
                assert!(content_type.is_some(), "sibling without content_type: {r:?}");
            }
            Sibling { value, content_type }
        })
        .collect();
    out.sort();
    (ctx, out)
}

/// The values of a sibling list (None for tombstones), sorted.
pub fn values(s: &[Sibling]) -> Vec<Option<Vec<u8>>> {
    let mut v: Vec<_> = s.iter().map(|s| s.value.clone()).collect();
    v.sort();
    v
}

/// `v[a][b][c]` by a dotted path, panicking with the document if missing.
pub fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).unwrap_or_else(|| panic!("missing field {path:?} in {v}"));
    }
    cur
}

pub fn num(v: &Value, path: &str) -> f64 {
    let f = field(v, path);
    f.as_f64()
        .unwrap_or_else(|| panic!("field {path:?} is not a number ({f}) in {v}"))
}

pub fn uint(v: &Value, path: &str) -> u64 {
    let f = field(v, path);
    f.as_u64()
        .unwrap_or_else(|| panic!("field {path:?} is not an unsigned integer ({f}) in {v}"))
}

pub fn string<'a>(v: &'a Value, path: &str) -> &'a str {
    let f = field(v, path);
    f.as_str()
        .unwrap_or_else(|| panic!("field {path:?} is not a string ({f}) in {v}"))
}

/// Poll `cond` every [`POLL_INTERVAL`] until it returns `Some`, or panic with
/// `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = cond() {
            return t;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The values of `versions` in an `/admin/local` document: `None` for a
/// tombstone; checks each entry's shape.
pub fn local_versions(doc: &Value) -> Vec<Option<Vec<u8>>> {
    let versions = doc["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions array: {doc}"));
    assert!(doc["hinted_for"].is_array(), "no hinted_for array: {doc}");
    let mut out: Vec<_> = versions
        .iter()
        .map(|v| {
            assert!(v["clock"].is_object(), "version without clock object: {doc}");
            let tomb = v["tombstone"]
                .as_bool()
                .unwrap_or_else(|| panic!("no tombstone bool: {doc}"));
            match &v["value"] {
                Value::Null => {
                    assert!(tomb, "null value but tombstone=false: {doc}");
                    None
                }
                Value::String(s) => {
                    assert!(!tomb, "value present but tombstone=true: {doc}");
                    Some(b64_decode(s))
                }
                other => panic!("version value {other} is neither base64 nor null: {doc}"),
            }
        })
        .collect();
    out.sort();
    out
}
