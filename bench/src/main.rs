//! `dynamo-bench`: a load generator for dynamo's HTTP API and, as a point of
//! comparison, etcd's v3 HTTP/JSON gateway.
//!
//! `--clients` logical clients (each with at most one request in flight) are
//! spread over `--threads` OS threads, each running its own actix System, and
//! round-robin over `--endpoints`. Closed loop by default (a client sends its
//! next request when the previous one has answered); with `--rate` open loop:
//! every client sends on a fixed schedule and latency is measured from the
//! *intended* send time, so a stalled server is not hidden by clients that
//! politely wait for it (coordinated omission).
//!
//! Every successful request's latency goes into an HDR histogram (µs, 3
//! significant figures); errors are counted by kind. The run stops at its
//! duration: requests still in flight then are abandoned and not counted.

mod request;
mod stats;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use awc::http::header::HeaderValue;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use request::{Client, Workload, REQUEST_TIMEOUT};
use stats::{RunInfo, Stats};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Dynamo,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    Put,
    Get,
    /// 50% PUT, 50% GET.
    Mixed,
}

/// Load generator for dynamo (and etcd's v3 HTTP/JSON gateway).
#[derive(Parser, Debug)]
#[command(name = "dynamo-bench", version)]
struct Args {
    /// What the endpoints are.
    #[arg(long, value_enum, default_value_t = Target::Dynamo)]
    target: Target,
    /// Base URLs, comma-separated (e.g. http://127.0.0.1:18001); clients are
    /// spread over them round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// The operation to measure.
    #[arg(long, value_enum, default_value_t = Op::Put)]
    op: Op,
    /// Concurrent clients in all (each has at most one request in flight).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// First key index: keys are `bench-{offset}` .. `bench-{offset+keys-1}`.
    #[arg(long, default_value_t = 0)]
    key_offset: u64,
    /// Number of distinct keys (`bench-0` .. `bench-{keys-1}`).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    duration_s: f64,
    /// Warm-up in seconds: load is applied but not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Open loop at this total rate (requests/s, over all clients); without
    /// it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// OS threads, each with its own actix System and clients/threads clients.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Write every key once before measuring (so GETs find their key). For
    /// dynamo each preload write first reads the key's context, so a key that
    /// exists already is superseded, not given a sibling.
    #[arg(long)]
    preload: bool,
    /// Give up a preload that has not finished after this many seconds.
    #[arg(long, default_value_t = 300)]
    preload_timeout_s: u64,
    /// Print the summary as one JSON line.
    #[arg(long)]
    json: bool,
    /// dynamo only: `w=` query parameter on PUTs.
    #[arg(long)]
    w: Option<u32>,
    /// dynamo only: `r=` query parameter on GETs.
    #[arg(long)]
    r: Option<u32>,
    /// etcd only: the gateway's path prefix (`/v3`; etcd 3.3 used `/v3beta`).
    #[arg(long, default_value = "/v3")]
    etcd_prefix: String,
    /// Write the latency of each measured second to this file, one JSON
    /// line per second (with its wall-clock start, to set beside node logs).
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
    /// Seed of the clients' key choices (client c uses seed + c).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// dynamo only: keep the contexts of the clients' writes in this file
    /// between runs over the same keys: read at the start if it exists,
    /// written at the end. Without it a run's first write of each key
    /// carries no context, so it sits beside the last run's value as a
    /// sibling instead of superseding it.
    #[arg(long)]
    contexts: Option<std::path::PathBuf>,
}

/// Counters the progress line reads while threads run.
#[derive(Default)]
struct Live {
    ops: AtomicU64,
    errors: AtomicU64,
    preload_failed: AtomicU64,
    /// Failed preload attempts by kind (each key is tried three times).
    preload_errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// The time frame of a run: load from `start`, measured from `warm_end` to `end`.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    warm_end: Instant,
    end: Instant,
    /// Seconds the timeline covers: the measured window's, or 0 without one.
    timeline_seconds: usize,
}

type Contexts = HashMap<u64, HeaderValue>;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("dynamo-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<i32> {
    let args = Args::parse();
    let workload = Arc::new(workload(&args)?);
    let threads = args.threads.clamp(1, args.clients);
    let interval = match args.rate {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 => Some(Duration::from_secs_f64(args.clients as f64 / r)),
        Some(r) => bail!("--rate must be a positive number of requests per second, not {r}"),
    };
    if !(args.duration_s.is_finite() && args.duration_s > 0.0) {
        bail!("--duration-s must be positive");
    }
    if !(args.warmup_s.is_finite() && args.warmup_s >= 0.0) {
        bail!("--warmup-s must be zero or positive");
    }
    let live = Arc::new(Live::default());

    // Phase 1: preload, each client writing the keys it owns (i % clients == c).
    let mut contexts: Vec<Contexts> = vec![HashMap::new(); args.clients];
    let mut other_contexts = Vec::new();
    if let Some(path) = &args.contexts {
        other_contexts = read_contexts(path, args.key_offset, args.keys, &mut contexts)?;
    }
    if args.preload {
        eprintln!(
            "preloading {} keys of {} B with {} clients",
            args.keys, args.value_size, args.clients
        );
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(args.preload_timeout_s);
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let (w, live) = (workload.clone(), live.clone());
            handles.push(spawn(format!("preload-{t}"), move || {
                preload_thread(w, t, threads, deadline, live)
            })?);
        }
        watch(&handles, &live, t0, |_| "preload", deadline + REQUEST_TIMEOUT * 2);
        for h in handles {
            let per_client = h.join().map_err(|_| anyhow::anyhow!("a preload thread panicked"))??;
            for (c, ctx) in per_client {
                contexts[c] = ctx;
            }
        }
        let failed = live.preload_failed.load(Ordering::Relaxed);
        eprintln!(
            "preloaded in {:.1} s; {} key(s) could not be written",
            t0.elapsed().as_secs_f64(),
            failed
        );
        if let Ok(kinds) = live.preload_errors.lock() {
            if !kinds.is_empty() {
                eprintln!("preload attempts that failed, by kind: {kinds:?}");
            }
        }
        if Instant::now() >= deadline {
            eprintln!("warning: preload stopped at its time limit; some keys were not written");
        }
    }

    // Phase 2: warm-up and measurement.
    live.ops.store(0, Ordering::Relaxed);
    live.errors.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup_s);
    let win = Window {
        start,
        warm_end,
        end: warm_end + Duration::from_secs_f64(args.duration_s),
        timeline_seconds: if args.timeline.is_some() {
            args.duration_s.ceil() as usize
        } else {
            0
        },
    };
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let mine: Vec<(usize, Contexts)> = (t..args.clients)
            .step_by(threads)
            .map(|c| (c, std::mem::take(&mut contexts[c])))
            .collect();
        let (w, live, seed) = (workload.clone(), live.clone(), args.seed);
        handles.push(spawn(format!("load-{t}"), move || {
            load_thread(w, mine, seed, interval, win, live)
        })?);
    }
    watch(
        &handles,
        &live,
        start,
        move |elapsed| {
            if start + elapsed < warm_end {
                "warmup"
            } else {
                "measure"
            }
        },
        win.end + REQUEST_TIMEOUT * 2,
    );
    let mut total = Stats::new(win.timeline_seconds)?;
    for h in handles {
        let (s, per_client) = h.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.merge(&s)?;
        for (c, ctx) in per_client {
            contexts[c] = ctx;
        }
    }
    if let Some(path) = &args.contexts {
        write_contexts(path, args.key_offset, &contexts, &other_contexts)?;
    }

    let info = RunInfo {
        op: match args.op {
            Op::Put => "put",
            Op::Get => "get",
            Op::Mixed => "mixed",
        },
        target: match args.target {
            Target::Dynamo => "dynamo",
            Target::Etcd => "etcd",
        },
        clients: args.clients,
        threads,
        endpoints: workload.endpoints.len(),
        keys: args.keys,
        value_size: args.value_size,
        duration_s: args.duration_s,
        rate: args.rate,
    };
    if let Some(path) = &args.timeline {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?;
        let start_unix = unix_now.as_secs_f64() - Instant::now().saturating_duration_since(win.warm_end).as_secs_f64();
        let mut out = String::new();
        for line in stats::timeline_json(&total, start_unix) {
            out.push_str(&line.to_string());
            out.push('\n');
        }
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", stats::summary_json(&info, &total)?);
    } else {
        println!("{}", stats::summary_text(&info, &total)?);
    }
    // A run that measured nothing is a failed run.
    Ok(if total.put.len() + total.get.len() == 0 { 1 } else { 0 })
}

fn workload(args: &Args) -> Result<Workload> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.op != Op::Get && args.keys < args.clients as u64 {
        bail!("writes partition the keys among clients: --keys must be at least --clients");
    }
    if args.preload && args.keys < args.clients as u64 {
        bail!("--preload partitions the keys among clients: --keys must be at least --clients");
    }
    let endpoints: Vec<String> = args
        .endpoints
        .iter()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("--endpoints: give at least one URL");
    }
    for e in &endpoints {
        if !e.starts_with("http://") {
            bail!("--endpoints: {e} is not a plain http:// URL");
        }
    }
    let mut value = vec![0u8; args.value_size];
    StdRng::seed_from_u64(args.seed).fill(&mut value[..]);
    let value_b64 = B64.encode(&value);
    let query = |name: &str, v: Option<u32>| v.map(|v| format!("?{name}={v}")).unwrap_or_default();
    Ok(Workload {
        target: args.target,
        op: args.op,
        clients: args.clients,
        keys: args.keys,
        endpoints,
        // One value for the whole run; leaked so that every request can send
        // it without a copy.
        value: Box::leak(value.into_boxed_slice()),
        value_b64,
        etcd_prefix: format!("/{}", args.etcd_prefix.trim_matches('/')),
        put_query: query("w", args.w),
        get_query: query("r", args.r),
        key_offset: args.key_offset,
    })
}

fn spawn<T: Send + 'static>(name: String, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .context("cannot start a thread")
}

/// One HTTP client per thread; its logical clients share its connection pool
/// (each holds at most one connection at a time).
fn http_client() -> awc::Client {
    awc::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .disable_redirects()
        .connector(awc::Connector::new().limit(0).timeout(REQUEST_TIMEOUT))
        .finish()
}

fn client(w: &Workload, http: &awc::Client, c: usize, contexts: Contexts) -> Client {
    Client {
        http: http.clone(),
        endpoint: w.endpoints[c % w.endpoints.len()].clone(),
        contexts,
    }
}

fn preload_thread(
    w: Arc<Workload>,
    t: usize,
    threads: usize,
    deadline: Instant,
    live: Arc<Live>,
) -> Result<Vec<(usize, Contexts)>> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let http = http_client();
        let mut tasks = Vec::new();
        for c in (t..w.clients).step_by(threads) {
            let mut cl = client(&w, &http, c, HashMap::new());
            let (w, live) = (w.clone(), live.clone());
            tasks.push(actix_rt::spawn(async move {
                for key in (c as u64..w.keys).step_by(w.clients) {
                    let mut written = false;
                    for _attempt in 0..3 {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let write = async {
                            cl.learn_context(&w, key).await?;
                            cl.put(&w, key).await
                        };
                        match actix_rt::time::timeout(REQUEST_TIMEOUT, write).await {
                            Ok(Ok(())) => {
                                live.ops.fetch_add(1, Ordering::Relaxed);
                                written = true;
                                break;
                            }
                            failed => {
                                let kind = match failed {
                                    Ok(Err(kind)) => kind,
                                    _ => "timeout".to_string(),
                                };
                                if let Ok(mut kinds) = live.preload_errors.lock() {
                                    *kinds.entry(kind).or_default() += 1;
                                }
                                live.errors.fetch_add(1, Ordering::Relaxed);
                                actix_rt::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    if !written {
                        live.preload_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                (c, cl.contexts)
            }));
        }
        let mut out = Vec::new();
        for task in futures::future::join_all(tasks).await {
            out.push(task.context("a preload client failed")?);
        }
        Ok(out)
    })
}

fn load_thread(
    w: Arc<Workload>,
    mine: Vec<(usize, Contexts)>,
    seed: u64,
    interval: Option<Duration>,
    win: Window,
    live: Arc<Live>,
) -> Result<(Stats, Vec<(usize, Contexts)>)> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let http = http_client();
        let stats = Rc::new(RefCell::new(Stats::new(win.timeline_seconds)?));
        let mut tasks = Vec::new();
        for (c, ctx) in mine {
            let cl = client(&w, &http, c, ctx);
            let rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
            tasks.push(actix_rt::spawn(client_loop(
                w.clone(),
                cl,
                c,
                rng,
                interval,
                win,
                stats.clone(),
                live.clone(),
            )));
        }
        let mut per_client = Vec::with_capacity(tasks.len());
        for task in futures::future::join_all(tasks).await {
            per_client.push(task.context("a load client failed")?);
        }
        let stats = Rc::try_unwrap(stats)
            .map(RefCell::into_inner)
            .unwrap_or_else(|rc| rc.borrow().clone());
        Ok((stats, per_client))
    })
}

/// One client: picks an operation and a key, sends, records; until the end of
/// the window. Returns the client's number and the contexts it holds.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    w: Arc<Workload>,
    mut cl: Client,
    c: usize,
    mut rng: StdRng,
    interval: Option<Duration>,
    win: Window,
    stats: Rc<RefCell<Stats>>,
    live: Arc<Live>,
) -> (usize, Contexts) {
    let end = tokio::time::Instant::from_std(win.end);
    // Open loop: client c's schedule is offset by c/clients of an interval, so
    // that the clients' sends are spread evenly over time.
    let mut next = interval.map(|i| win.start + i.mul_f64(c as f64 / w.clients as f64));
    // The keys this client writes: c, c + clients, c + 2 clients, ...
    let own_keys = (w.keys - c as u64).div_ceil(w.clients as u64).max(1);
    loop {
        let intended = match (next.as_mut(), interval) {
            (Some(next), Some(i)) => {
                let t = *next;
                if t >= win.end {
                    break;
                }
                *next += i;
                tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
                t
            }
            _ => {
                let now = Instant::now();
                if now >= win.end {
                    break;
                }
                now
            }
        };
        let is_put = match w.op {
            Op::Put => true,
            Op::Get => false,
            Op::Mixed => rng.gen_bool(0.5),
        };
        let key = if is_put {
            c as u64 + w.clients as u64 * rng.gen_range(0..own_keys)
        } else {
            rng.gen_range(0..w.keys)
        };
        let outcome = tokio::select! {
            r = actix_rt::time::timeout(REQUEST_TIMEOUT, async {
                if is_put { cl.put(&w, key).await } else { cl.get(&w, key).await }
            }) => r,
            _ = tokio::time::sleep_until(end) => break,
        };
        let done = Instant::now();
        let measured = intended >= win.warm_end && done <= win.end;
        let ok = matches!(outcome, Ok(Ok(())));
        match outcome {
            Ok(Ok(())) => {
                live.ops.fetch_add(1, Ordering::Relaxed);
                if measured {
                    let elapsed = done.duration_since(intended);
                    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                    let second = intended.duration_since(win.warm_end).as_secs() as usize;
                    stats.borrow_mut().record(is_put, second, us);
                }
            }
            Ok(Err(kind)) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    stats.borrow_mut().error(&kind);
                }
            }
            Err(_elapsed) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    stats.borrow_mut().error("timeout");
                }
            }
        }
        if interval.is_none() && !ok {
            // Closed loop: do not spin on a node that refuses connections.
            tokio::select! {
                _ = actix_rt::time::sleep(Duration::from_millis(10)) => {}
                _ = tokio::time::sleep_until(end) => break,
            }
        }
    }
    // Open loop: the sends scheduled inside the measured window that the
    // client never got to (it was still waiting on earlier responses).
    if let (Some(next), Some(i)) = (next, interval) {
        let from = next.max(win.warm_end);
        if from < win.end {
            let missed = ((win.end - from).as_secs_f64() / i.as_secs_f64()).ceil() as u64;
            stats.borrow_mut().not_sent += missed;
        }
    }
    (c, cl.contexts)
}

/// Load a `--contexts` file (lines of key number, tab, context: the number
/// in `bench-{number}`) into the maps of the clients that write each of
/// this run's keys (index % clients, index = number - offset < keys); a
/// missing file is an empty one. Returns the lines of other keys, which the
/// file keeps.
fn read_contexts(path: &std::path::Path, offset: u64, keys: u64, contexts: &mut [Contexts]) -> Result<Vec<Vec<u8>>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let clients = contexts.len() as u64;
    let mut others = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let bad = || anyhow::anyhow!("{} line {}: not `key<TAB>context`", path.display(), n + 1);
        let tab = line.iter().position(|b| *b == b'\t').ok_or_else(bad)?;
        let key: u64 = std::str::from_utf8(&line[..tab])
            .ok()
            .and_then(|k| k.parse().ok())
            .ok_or_else(bad)?;
        let ctx = HeaderValue::from_bytes(&line[tab + 1..]).map_err(|_| bad())?;
        match key.checked_sub(offset).filter(|index| *index < keys) {
            Some(index) => {
                contexts[(index % clients) as usize].insert(index, ctx);
            }
            None => others.push(line.to_vec()),
        }
    }
    Ok(others)
}

/// Write every client's contexts, and the lines of other keys read at the
/// start, to a `--contexts` file, replacing it whole.
fn write_contexts(path: &std::path::Path, offset: u64, contexts: &[Contexts], others: &[Vec<u8>]) -> Result<()> {
    let mut out = Vec::new();
    for line in others {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    for (index, ctx) in contexts.iter().flatten() {
        out.extend_from_slice((index + offset).to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(ctx.as_bytes());
        out.push(b'\n');
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Prints a progress line to stderr every second until every thread is done;
/// exits the process if they are not done by `hard_deadline`.
fn watch<T>(
    handles: &[JoinHandle<T>],
    live: &Live,
    t0: Instant,
    phase: impl Fn(Duration) -> &'static str,
    hard_deadline: Instant,
) {
    let mut tick = t0 + Duration::from_secs(1);
    let (mut last_ops, mut last_errors) = (0u64, 0u64);
    while !handles.iter().all(|h| h.is_finished()) {
        let now = Instant::now();
        if now >= hard_deadline {
            eprintln!("dynamo-bench: threads still busy past the time limit; giving up");
            std::process::exit(3);
        }
        if now >= tick {
            let ops = live.ops.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let elapsed = now.duration_since(t0);
            eprintln!(
                "[{:>7}] {:>4}s  {:>8} ops/s  {:>5} errors/s  ({} errors in all)",
                phase(elapsed),
                elapsed.as_secs(),
                ops.saturating_sub(last_ops),
                errors.saturating_sub(last_errors),
                errors
            );
            (last_ops, last_errors) = (ops, errors);
            tick += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_file_round_trips_and_keeps_other_keys() {
        let path = std::env::temp_dir().join(format!("dynamo-bench-contexts-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut first: Vec<Contexts> = vec![HashMap::new(); 4];
        assert!(read_contexts(&path, 0, 10, &mut first)
            .expect("missing file")
            .is_empty());
        // Keys bench-0..9 (offset 0) and bench-100..104 (offset 100).
        for k in 0..10u64 {
            first[(k % 4) as usize].insert(k, HeaderValue::from_str(&format!("ctx-{k}")).expect("ascii"));
        }
        write_contexts(&path, 0, &first, &[]).expect("write");
        let mut other: Vec<Contexts> = vec![HashMap::new(); 2];
        let kept = read_contexts(&path, 100, 5, &mut other).expect("read");
        assert_eq!(kept.len(), 10, "no key of offset 0 is in 100..105");
        other[0].insert(2, HeaderValue::from_static("ctx-102"));
        write_contexts(&path, 100, &other, &kept).expect("write");
        // Read back with another client count: each key goes to index % clients.
        let mut again: Vec<Contexts> = vec![HashMap::new(); 3];
        let kept = read_contexts(&path, 0, 10, &mut again).expect("read");
        assert_eq!(kept, vec![b"102\tctx-102".to_vec()]);
        for k in 0..10u64 {
            assert_eq!(again[(k % 3) as usize][&k], format!("ctx-{k}").as_str());
        }
        std::fs::write(&path, "7 no tab\n").expect("write");
        assert!(read_contexts(&path, 0, 10, &mut again).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
