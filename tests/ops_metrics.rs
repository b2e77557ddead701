//! `GET /metrics` (SPEC §4) on a real three-node cluster: the Prometheus
//! text exposition parses, every family has HELP and TYPE, the request
//! counters and histograms match the requests made, and — where Prometheus'
//! own `promtool` is installed — `promtool check metrics` accepts it.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

// ---------------------------------------------------------------------------
// A small parser of the text exposition format 0.0.4
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample `name{labels}` (labels must match exactly).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "want exactly one sample {name}{want:?}, found {found:?}"
        );
        found[0].value
    }

    fn kind(&self, family: &str) -> &str {
        self.families
            .get(family)
            .and_then(|f| f.kind.as_deref())
            .unwrap_or_else(|| panic!("no TYPE for family {family}"))
    }

    /// The `(le, count)` buckets of one histogram series, in order.
    fn buckets(&self, family: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{family}_bucket");
        let base: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .filter(|s| s.name == bucket)
            .filter(|s| {
                let mut l = s.labels.clone();
                l.remove("le");
                l == base
            })
            .map(|s| (parse_value(&s.labels["le"]), s.value))
            .collect()
    }
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().unwrap_or_else(|e| panic!("bad sample value {s:?}: {e}")),
    }
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse `name{a="x",b="y"} value` (label values with `\\`, `\"`, `\n`).
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            // label name
            let start = chars
                .peek()
                .map(|(i, _)| *i)
                .unwrap_or_else(|| panic!("unterminated: {line:?}"));
            if r[start..].starts_with('}') {
                chars.next();
                rest = &r[start + 1..];
                break;
            }
            let eq = r[start..].find('=').unwrap_or_else(|| panic!("no '=': {line:?}")) + start;
            let lname = r[start..eq].to_string();
            assert!(
                valid_name(&lname) && !lname.contains(':'),
                "bad label name {lname:?}: {line:?}"
            );
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "label value not quoted: {line:?}"
            );
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => panic!("bad escape {other:?}: {line:?}"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value: {line:?}"),
                }
            }
            assert!(
                labels.insert(lname.clone(), value).is_none(),
                "label {lname} twice: {line:?}"
            );
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => panic!("unexpected {other:?} after a label: {line:?}"),
            }
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next().unwrap_or_else(|| panic!("no value: {line:?}")));
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .unwrap_or_else(|e| panic!("bad timestamp ({e}): {line:?}"));
    }
    assert!(parts.next().is_none(), "trailing text: {line:?}");
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// Parse a whole exposition, checking that every sample belongs to the
/// family declared just before it (HELP and TYPE first, families not split).
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    let mut current: Option<String> = None;
    let mut closed: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            let (kw, name, tail) = (it.next(), it.next(), it.next().unwrap_or(""));
            let (Some(kw), Some(name)) = (kw, name) else {
                continue;
            };
            if kw != "HELP" && kw != "TYPE" {
                continue;
            }
            assert!(valid_name(name), "bad family name {name:?}");
            if current.as_deref() != Some(name) {
                assert!(!closed.iter().any(|c| c == name), "family {name} split in two");
                if let Some(c) = current.take() {
                    closed.push(c);
                }
                current = Some(name.to_string());
            }
            let fam = e.families.entry(name.to_string()).or_default();
            if kw == "HELP" {
                assert!(fam.help.replace(tail.to_string()).is_none(), "two HELP for {name}");
            } else {
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                    "bad TYPE {tail:?} for {name}"
                );
                assert!(fam.kind.replace(tail.to_string()).is_none(), "two TYPE for {name}");
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let s = parse_sample(line);
        let fam = current
            .as_deref()
            .unwrap_or_else(|| panic!("sample before any family: {line:?}"));
        let base = match e.families.get(fam).and_then(|f| f.kind.as_deref()) {
            Some("histogram") => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| s.name.strip_suffix(suf).filter(|b| *b == fam))
                .unwrap_or(&s.name),
            _ => &s.name,
        };
        assert_eq!(base, fam, "sample {line:?} outside its family {fam}");
        e.samples.push(s);
    }
    for (name, fam) in &e.families {
        assert!(
            fam.help.as_deref().is_some_and(|h| !h.is_empty()),
            "family {name} has no HELP"
        );
        assert!(fam.kind.is_some(), "family {name} has no TYPE");
    }
    e
}

/// Check one histogram series: cumulative, ends with `+Inf` = `_count`.
fn check_histogram(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    assert_eq!(e.kind(family), "histogram");
    let b = e.buckets(family, labels);
    assert!(b.len() >= 2, "{family}{labels:?}: too few buckets {b:?}");
    for w in b.windows(2) {
        assert!(w[0].0 < w[1].0, "{family}{labels:?}: bounds not increasing {b:?}");
        assert!(w[0].1 <= w[1].1, "{family}{labels:?}: buckets not cumulative {b:?}");
    }
    let last = b[b.len() - 1];
    assert!(last.0.is_infinite(), "{family}{labels:?}: no +Inf bucket {b:?}");
    let count = e.value(&format!("{family}_count"), labels);
    assert_eq!(last.1, count, "{family}{labels:?}: +Inf bucket != _count");
    let sum = e.value(&format!("{family}_sum"), labels);
    assert!(sum >= 0.0, "{family}{labels:?}: negative sum");
    count
}

fn promtool_check(body: &[u8]) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED promtool check: promtool not runnable ({e}); apt-get install prometheus");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn metrics(c: &Cluster, i: usize) -> (Resp, Exposition) {
    let r = c.get(i, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "Content-Type {ct:?}");
    let e = parse(&r.text());
    (r, e)
}

#[test]
fn metrics_count_what_was_done() {
    let c = Cluster::start(3, Opts::default());

    // Before any /kv request, every request counter is zero.
    let (_, before) = metrics(&c, 0);
    for op in ["get", "put", "delete"] {
        for outcome in ["ok", "error"] {
            assert_eq!(
                before.value("dynamo_requests_total", &[("op", op), ("outcome", outcome)]),
                0.0
            );
        }
    }

    // All through node 0: counters are per node (the one that answered).
    for k in ["m1", "m2", "m3", "m4"] {
        c.put_ok(0, k.as_bytes(), b"v", None);
    }
    // Two blind writes of one key: concurrent, so siblings.
    c.put_ok(0, b"sib", b"a", None);
    c.put_ok(0, b"sib", b"b", None);
    for k in ["m1", "m2", "m3"] {
        let g = c.kv(0, "GET", k.as_bytes()).send();
        assert_eq!(g.status, 200, "{g:?}");
    }
    let g = c.kv(0, "GET", b"sib").send();
    assert_eq!(g.status, 300, "{g:?}");
    let g = c.kv(0, "GET", b"never-written").send();
    assert_eq!(g.status, 404, "{g:?}");
    // A client's mistake is answered, and not a server error.
    let g = c.kv(0, "GET", b"m1").query("r", "9").send();
    assert_eq!(g.status, 400, "{g:?}");
    let d = c.kv(0, "DELETE", b"m4").send();
    assert_eq!(d.status, 204, "{d:?}");
    let d = c.kv(0, "DELETE", b"m4").ctx(Some("not-a-context")).send();
    assert_eq!(d.status, 400, "{d:?}");

    let (resp, e) = metrics(&c, 0);
    let want = [("get", 6.0), ("put", 6.0), ("delete", 2.0)];
    for (op, n) in want {
        assert_eq!(
            e.value("dynamo_requests_total", &[("op", op), ("outcome", "ok")]),
            n,
            "{op} ok"
        );
        assert_eq!(
            e.value("dynamo_requests_total", &[("op", op), ("outcome", "error")]),
            0.0,
            "{op} error"
        );
        let count = check_histogram(&e, "dynamo_request_duration_seconds", &[("op", op)]);
        assert_eq!(count, n, "{op} latency observations");
        assert!(e.value("dynamo_request_duration_seconds_sum", &[("op", op)]) > 0.0);
    }
    assert_eq!(e.kind("dynamo_requests_total"), "counter");

    // Siblings per GET answer that carried a value: three 200s and one 300.
    assert_eq!(check_histogram(&e, "dynamo_siblings", &[]), 4.0);
    let sib = e.buckets("dynamo_siblings", &[]);
    let at = |le: f64| sib.iter().find(|(b, _)| *b == le).map(|(_, c)| *c);
    assert_eq!(at(1.0), Some(3.0), "{sib:?}");
    assert_eq!(at(2.0), Some(4.0), "{sib:?}");
    assert_eq!(e.value("dynamo_siblings_sum", &[]), 5.0);

    // Membership: three up, nobody else.
    assert_eq!(e.kind("dynamo_members"), "gauge");
    for (status, n) in [("up", 3.0), ("suspect", 0.0), ("down", 0.0), ("leaving", 0.0)] {
        assert_eq!(e.value("dynamo_members", &[("status", status)]), n, "{status}");
    }

    // The rest of the SPEC's figures, with their types.
    for (family, kind) in [
        ("dynamo_hints_pending", "gauge"),
        ("dynamo_hints_delivered_total", "counter"),
        ("dynamo_read_repairs_total", "counter"),
        ("dynamo_anti_entropy_keys_repaired_total", "counter"),
        ("dynamo_anti_entropy_exchanges_total", "counter"),
        ("dynamo_storage_keys", "gauge"),
        ("dynamo_storage_bytes", "gauge"),
        ("dynamo_tombstones_purged_total", "counter"),
        ("dynamo_peer_failures_total", "counter"),
        ("dynamo_forwarded_total", "counter"),
    ] {
        assert_eq!(e.kind(family), kind, "{family}");
        assert!(e.value(family, &[]) >= 0.0, "{family}");
    }
    assert_eq!(e.value("dynamo_hints_pending", &[]), 0.0);
    for s in &e.samples {
        assert!(s.name.starts_with("dynamo_"), "unprefixed metric {}", s.name);
        assert!(s.value.is_finite() && s.value >= 0.0, "{s:?}");
    }
    for (name, fam) in &e.families {
        if fam.kind.as_deref() == Some("counter") {
            assert!(name.ends_with("_total"), "counter {name} without _total");
        }
    }

    // The same figures as /status.
    let st = c.status(0);
    assert_eq!(uint(&st, "requests.put.count") as f64, 6.0);
    assert_eq!(
        e.value("dynamo_partitions", &[]),
        uint(&st, "partitions") as f64,
        "partitions"
    );
    let owned: f64 = e
        .samples
        .iter()
        .filter(|s| s.name == "dynamo_partitions_owned")
        .map(|s| s.value)
        .sum();
    assert_eq!(owned, PARTITIONS as f64, "partitions_owned sum to Q");

    // Another node answered no /kv request.
    let (_, other) = metrics(&c, 1);
    for op in ["get", "put", "delete"] {
        assert_eq!(
            other.value("dynamo_requests_total", &[("op", op), ("outcome", "ok")]),
            0.0
        );
    }

    promtool_check(&resp.body);
}

#[test]
fn metrics_wrong_method_is_405() {
    let c = Cluster::start(1, Opts::default());
    let r = c.http(0, "POST", "/metrics", &[], Some(b""));
    assert_json_error(&r, 405);
    let (resp, e) = metrics(&c, 0);
    assert_eq!(e.value("dynamo_members", &[("status", "up")]), 1.0);
    promtool_check(&resp.body);
}

#[test]
fn parser_rejects_what_it_should() {
    let ok = parse(
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\\\\\\n\"} 1\n\
         # HELP h y\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n",
    );
    assert_eq!(ok.value("a_total", &[("l", "q\"\\\n")]), 1.0);
    assert_eq!(check_histogram(&ok, "h", &[]), 2.0);
    for bad in [
        "a 1\n",                                                         // no family
        "# HELP a x\na 1\n",                                             // no TYPE
        "# HELP a x\n# TYPE a gauge\nb 1\n",                             // outside its family
        "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n",                      // unterminated
        "# HELP a x\n# TYPE a gauge\na{l=x} 1\n",                        // unquoted
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\n", // split
    ] {
        let r = std::panic::catch_unwind(|| parse(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}
