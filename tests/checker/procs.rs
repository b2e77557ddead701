//! The checker against real `dynamo` processes: clients over HTTP, a nemesis
//! that SIGKILLs and restarts nodes on their data dirs and SIGSTOPs /
//! SIGCONTs them, then a heal, convergence, and every replica read through
//! `/admin/local` and every key through `GET r=N`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::{b64_decode, encode_key, node_id, Cluster, Opts, Resp};
use crate::model::*;

/// Client-side bound for one request (the cluster's request timeout is 1 s;
/// a paused coordinator never answers, so this must stay short: a client
/// waiting on it does nothing else).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What became of one HTTP request.
enum Answer {
    Resp(Resp),
    /// Nothing was sent (connection refused or not established).
    Refused(String),
    /// Sent, but no (complete) answer: it may have taken effect.
    Broken(String),
}

fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    // A fresh agent, no pooled connection: ureq would retry a PUT on a stale
    // pooled connection, and a retried PUT is a second write.
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(CLIENT_TIMEOUT)
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
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
            return Answer::Refused(t.to_string())
        }
        Err(ureq::Error::Transport(t)) => return Answer::Broken(t.to_string()),
    };
    let status = resp.status();
    let mut headers = Vec::new();
    for name in resp.headers_names() {
        for v in resp.all(&name) {
            headers.push((name.clone(), v.to_string()));
        }
    }
    let mut bytes = Vec::new();
    match resp.into_reader().take(16 << 20).read_to_end(&mut bytes) {
        Ok(_) => Answer::Resp(Resp {
            status,
            headers,
            body: bytes,
        }),
        Err(e) => Answer::Broken(format!("reading body: {e}")),
    }
}

/// Siblings of a `200`/`300` JSON answer (`Accept: application/json`).
fn siblings_of(r: &Resp) -> Result<(String, Vec<Seen>), String> {
    let v: Json = serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e}): {r:?}"))?;
    let ctx = v["context"]
        .as_str()
        .ok_or_else(|| format!("no context: {r:?}"))?
        .to_string();
    let list = v["siblings"].as_array().ok_or_else(|| format!("no siblings: {r:?}"))?;
    let mut out = Vec::new();
    for s in list {
        match &s["value"] {
            Json::Null => out.push(Seen::Tombstone),
            Json::String(b) => out.push(Seen::of(Some(&b64_decode(b)))),
            other => return Err(format!("sibling value {other}: {r:?}")),
        }
    }
    Ok((ctx, out))
}

fn versions_of_local(doc: &Json) -> VersionSet {
    let versions = doc["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions array: {doc}"));
    versions
        .iter()
        .map(|v| {
            let data = v["value"].as_str().map(b64_decode);
            Held {
                seen: Seen::of(data.as_deref()),
                clock: v["clock"].to_string(),
            }
        })
        .collect()
}

/// One client: read-modify-write cycles on random keys through random nodes.
fn client(n: usize, p: &Params, urls: &[String], history: &History, deadline: Instant) {
    let mut rng = Rng::fork(p.seed, n as u64 + 1);
    let backoff = Duration::from_millis(20);
    while Instant::now() < deadline && history.writes_attempted() < p.ops {
        let key = rng.below(p.keys);
        let path = format!("/kv/{}", encode_key(key_name(key).as_bytes()));
        // Mostly the default R; sometimes r=1, which sees less.
        let via = rng.below(urls.len());
        let r_query = if rng.chance(0.15) { "?r=1" } else { "" };
        let url = format!("{}{path}{r_query}", urls[via]);
        let (ctx, saw) = match call("GET", &url, &[("Accept", "application/json")], None) {
            Answer::Resp(r) if r.status == 200 || r.status == 300 => match siblings_of(&r) {
                Ok((ctx, sibs)) => (Some(ctx), history.read(key, &sibs, &node_id(via))),
                Err(e) => {
                    history.unexpected(format!("GET {url}: {e}"));
                    continue;
                }
            },
            Answer::Resp(r) if r.status == 404 => {
                if r.context().is_some() {
                    history.unexpected(format!(
                        "GET {url}: 404 with a tombstone's context (nobody deletes): {r:?}"
                    ));
                }
                history.read(key, &[], &node_id(via));
                (None, vec![])
            }
            Answer::Resp(r) if r.status == 503 => {
                history.read_failed();
                std::thread::sleep(backoff);
                continue;
            }
            Answer::Resp(r) => {
                history.unexpected(format!("GET {url}: {r:?}"));
                continue;
            }
            Answer::Refused(_) | Answer::Broken(_) => {
                history.read_failed();
                std::thread::sleep(backoff);
                continue;
            }
        };
        let (id, value) = history.begin_write(key, saw);
        let via = if rng.chance(0.5) { via } else { rng.below(urls.len()) };
        let w_query = if rng.chance(0.15) { "?w=1" } else { "" };
        let url = format!("{}{path}{w_query}", urls[via]);
        let mut headers = vec![("Content-Type", CONTENT_TYPE)];
        if let Some(c) = ctx.as_deref() {
            headers.push(("X-Context", c));
        }
        let outcome = match call("PUT", &url, &headers, Some(&value)) {
            Answer::Resp(r) if r.status == 204 => Outcome::Acked,
            Answer::Resp(r) if r.status == 503 => Outcome::Indeterminate,
            Answer::Resp(r) => {
                history.unexpected(format!("PUT {url} (id {id}): {r:?}"));
                Outcome::Indeterminate
            }
            Answer::Refused(_) => Outcome::Failed,
            Answer::Broken(_) => Outcome::Indeterminate,
        };
        history.end_write(id, outcome);
        if outcome != Outcome::Acked {
            std::thread::sleep(backoff);
        }
    }
}

fn sig(c: &Cluster, i: usize, s: libc::c_int) {
    if let Some(pid) = c.pid(i) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe {
            libc::kill(pid as libc::pid_t, s);
        }
    }
}

/// Counts a client out when it ends, however it ends.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sleep `d`, in steps, returning early once no client runs any more.
fn nap(d: Duration, running: &AtomicUsize) {
    let until = Instant::now() + d;
    while running.load(Ordering::SeqCst) > 0 {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// Kill, pause and restart nodes until `running` or `deadline`; every fault is
/// healed before the next one starts and before returning.
fn nemesis(c: &mut Cluster, p: &Params, running: &AtomicUsize, deadline: Instant, log: &mut FaultLog) {
    let mut rng = Rng::fork(p.seed, 0);
    let n = c.len();
    nap(rng.millis(300, 800), running);
    // Fault kinds take turns (from a seeded starting point), so even a short
    // run sees each; nodes and durations are drawn at random.
    let mut round = rng.below(KINDS);
    while running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n;
        let hold = rng.millis(300, 2000);
        match round % KINDS {
            0 => {
                log.add("kill");
                c.kill(a);
                nap(hold, running);
                c.restart(a);
            }
            1 => {
                log.add("pause");
                sig(c, a, libc::SIGSTOP);
                nap(hold, running);
                sig(c, a, libc::SIGCONT);
            }
            2 => {
                // A majority down: writes get 503, some still land on one
                // replica (indeterminate) and must propagate later.
                log.add("kill2");
                c.kill(a);
                nap(rng.millis(0, 300), running);
                c.kill(b);
                nap(hold, running);
                c.restart(a);
                c.restart(b);
            }
            3 => {
                log.add("pause+kill");
                sig(c, a, libc::SIGSTOP);
                c.kill(b);
                nap(hold, running);
                sig(c, a, libc::SIGCONT);
                c.restart(b);
            }
            _ => {
                // Every node crashes at once: what was acknowledged is in
                // their write-ahead logs.
                log.add("kill_all");
                for i in 0..n {
                    c.kill(i);
                }
                nap(hold, running);
                for i in 0..n {
                    c.spawn(i);
                }
                for i in 0..n {
                    c.wait_healthy(i);
                }
            }
        }
        round += 1;
        nap(rng.millis(400, 1500), running);
    }
}

/// How many kinds of fault the nemesis has.
const KINDS: usize = 5;

/// Owners of `key` by the cluster's `/ring`, as node indices.
fn owners(c: &Cluster, ring: &Json, key: &[u8]) -> Vec<usize> {
    let q = ring["partitions"].as_array().map(Vec::len).unwrap_or(0) as u32;
    assert!(q > 0, "bad /ring: {ring}");
    let part = dynamo_core::ring::partition_of(key, q) as usize;
    let ids = c.node_ids();
    ring["partitions"][part]["owners"]
        .as_array()
        .unwrap_or_else(|| panic!("bad /ring: {ring}"))
        .iter()
        .map(|o| {
            let o = o.as_str().unwrap_or("");
            ids.iter()
                .position(|id| id == o)
                .unwrap_or_else(|| panic!("owner {o} is not a node"))
        })
        .collect()
}

fn local(c: &Cluster, i: usize, key: &[u8]) -> Result<VersionSet, String> {
    let url = c.url(i, &format!("/admin/local/{}", encode_key(key)));
    match call("GET", &url, &[], None) {
        Answer::Resp(r) if r.status == 200 => Ok(versions_of_local(&r.json())),
        Answer::Resp(r) => Err(format!("{url}: {r:?}")),
        Answer::Refused(e) | Answer::Broken(e) => Err(e),
    }
}

fn pending_hints(c: &Cluster) -> Result<u64, String> {
    let mut sum = 0;
    for i in 0..c.len() {
        match call("GET", &c.url(i, "/status"), &[], None) {
            Answer::Resp(r) if r.status == 200 => {
                sum += r.json()["hints"]["pending"]
                    .as_u64()
                    .ok_or_else(|| format!("no hints.pending in {}'s status", node_id(i)))?
            }
            Answer::Resp(r) => return Err(format!("{} /status: {r:?}", node_id(i))),
            Answer::Refused(e) | Answer::Broken(e) => return Err(e),
        }
    }
    Ok(sum)
}

/// Each key's replicas (and non-replicas) as `/admin/local` shows them.
fn snapshot(c: &Cluster, ring: &Json, keys: usize) -> Result<Vec<KeyFinal>, String> {
    let mut out = Vec::new();
    for k in 0..keys {
        let key = key_name(k).into_bytes();
        let own = owners(c, ring, &key);
        let mut f = KeyFinal {
            key: k,
            ..KeyFinal::default()
        };
        for i in 0..c.len() {
            let set = local(c, i, &key)?;
            if own.contains(&i) {
                f.replicas.push((node_id(i), set));
            } else {
                f.strays.push((node_id(i), set));
            }
        }
        out.push(f);
    }
    Ok(out)
}

fn converged(finals: &[KeyFinal]) -> bool {
    finals
        .iter()
        .all(|f| f.replicas.windows(2).all(|w| w[0].1 == w[1].1) && f.strays.iter().all(|(_, s)| s.is_empty()))
}

/// The whole run; returns the report and the summary line.
pub fn run(p: &Params) -> (Report, String) {
    let started = Instant::now();
    let mut c = Cluster::start(p.nodes, Opts::args(&["--anti-entropy-interval-ms", "100"]));
    let urls: Vec<String> = (0..c.len()).map(|i| format!("http://{}", c.http_addr(i))).collect();
    let history = History::new();
    let mut faults = FaultLog::default();
    let work_started = Instant::now();
    let deadline = work_started + p.duration();
    // The nemesis runs on this (the test's) thread: nodes it restarts get
    // PR_SET_PDEATHSIG, which fires when the *thread* that spawned them
    // exits, so they must not be spawned from a short-lived thread.
    let running = AtomicUsize::new(p.clients);
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..p.clients)
            .map(|n| {
                let (urls, history, running) = (&urls, &history, &running);
                s.spawn(move || {
                    let _done = Done(running);
                    client(n, p, urls, history, deadline)
                })
            })
            .collect();
        let nem = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            nemesis(&mut c, p, &running, deadline, &mut faults)
        }));
        for h in clients {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
        if let Err(e) = nem {
            std::panic::resume_unwind(e);
        }
    });
    let workload = work_started.elapsed();

    // Heal: everything running and resumed, one cluster again.
    for i in 0..c.len() {
        sig(&c, i, libc::SIGCONT);
        if !c.is_running(i) {
            c.restart(i);
        }
    }
    c.wait_ready();

    // Converge: no hint pending, every key's replicas equal, no stand-in
    // still holding a copy. Poll, bounded.
    let heal_started = Instant::now();
    let ring = c.get(0, "/ring").json();
    let converge_deadline = heal_started + p.converge_timeout();
    let finals = loop {
        let hints = pending_hints(&c);
        let snap = snapshot(&c, &ring, p.keys);
        let why = match (&hints, &snap) {
            (Ok(0), Ok(f)) if converged(f) => break f.clone(),
            (Err(e), _) | (_, Err(e)) => e.clone(),
            (Ok(h), Ok(_)) => format!("{h} hints pending or replicas differ"),
        };
        if Instant::now() >= converge_deadline {
            eprintln!("not converged within {:?}: {why}", p.converge_timeout());
            break snap.unwrap_or_else(|e| panic!("cannot read the replicas after the heal: {e}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let convergence = heal_started.elapsed();

    // Reads through every node with r=N see exactly the replicas' versions.
    let mut finals = finals;
    for f in finals.iter_mut() {
        let path = format!("/kv/{}?r={}", encode_key(key_name(f.key).as_bytes()), f.replicas.len());
        for (i, url) in urls.iter().enumerate() {
            let set: VersionSet = match call("GET", &format!("{url}{path}"), &[("Accept", "application/json")], None) {
                Answer::Resp(r) if r.status == 200 || r.status == 300 => match siblings_of(&r) {
                    Ok((_, sibs)) => sibs
                        .into_iter()
                        .map(|seen| Held {
                            seen,
                            clock: String::new(),
                        })
                        .collect(),
                    Err(e) => [Held {
                        seen: Seen::Junk(e),
                        clock: String::new(),
                    }]
                    .into(),
                },
                Answer::Resp(r) if r.status == 404 => VersionSet::new(),
                Answer::Resp(r) => [Held {
                    seen: Seen::Junk(format!("GET answered {}", r.status)),
                    clock: String::new(),
                }]
                .into(),
                Answer::Refused(e) | Answer::Broken(e) => [Held {
                    seen: Seen::Junk(format!("GET failed: {e}")),
                    clock: String::new(),
                }]
                .into(),
            };
            f.reads.push((format!("GET r=N via {}", node_id(i)), set));
        }
    }
    let report = history.check(&finals);
    let stats: BTreeMap<usize, usize> = finals
        .iter()
        .map(|f| (f.key, f.replicas.first().map_or(0, |r| r.1.len())))
        .collect();
    let summary = format!(
        "checker[processes] seed={:#x} nodes={} clients={} keys={} workload={:.1}s faults={} converged_in={:.1}s total={:.1}s \
         siblings_per_key={:?} | {report}",
        p.seed,
        p.nodes,
        p.clients,
        p.keys,
        workload.as_secs_f64(),
        faults,
        convergence.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        stats.values().collect::<Vec<_>>(),
    );
    (report, summary)
}
