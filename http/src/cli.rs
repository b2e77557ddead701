//! The client side of the `dynamo` binary (SPEC §4): `status`, `get`, `put`,
//! `delete`, `leave`, `remove`, and a hidden `health` for container health
//! checks. Each command is one or two HTTP requests to one node, made with
//! `awc` on a single-threaded actix system.
//!
//! Output: readable by default, `--json` for scripts; errors are one line
//! on stderr and an exit code from [`EXIT_CODES`].

use std::ffi::OsString;
use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode, Uri};
use clap::{Args, Subcommand};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// The node a client command talks to when neither `--node` nor
/// `DYNAMO_NODE` names one.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8000";

/// Shown at the end of `dynamo --help`.
pub const EXIT_CODES: &str = "\
Client commands (status, get, put, delete, leave, remove) talk to the node
named by --node (or DYNAMO_NODE) and send DYNAMO_CLIENT_TOKEN, when set, as
`Authorization: Bearer <token>`.

Exit codes:
  0  success
  1  not found (no such key, or it was deleted; unknown node or route)
  2  usage error (bad arguments, malformed --node URL)
  3  request failed: node unreachable, timed out, or a 5xx answer
     (503: fewer replicas than the quorum answered)
  4  the node refused the request (any other 4xx: bad request,
     missing or wrong token, conflict, value too large)";

/// Exit code: success.
const EXIT_OK: u8 = 0;
/// Exit code: not found.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: usage error.
const EXIT_USAGE: u8 = 2;
/// Exit code: unreachable, timed out, 5xx.
const EXIT_FAILED: u8 = 3;
/// Exit code: any other 4xx.
const EXIT_REFUSED: u8 = 4;

/// Largest value read from stdin by `put KEY -` (the server's own limit,
/// `max_value_bytes`, is at most this).
const MAX_STDIN_BYTES: u64 = 64 * 1024 * 1024;
/// Largest response body accepted (a siblings document is base64, so it may
/// be larger than any one value).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

const X_CONTEXT: &str = "x-context";
const X_COORDINATOR: &str = "x-dynamo-coordinator";
const X_REPLICAS: &str = "x-dynamo-replicas";

/// Every byte but RFC 3986's unreserved ones is percent-encoded in a path
/// segment (so `a/b` stays one key, `%2F` and all).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Options every client command takes, before or after its name.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Node to talk to, `http://HOST:PORT` (client commands).
    #[arg(long, global = true, env = "DYNAMO_NODE", default_value = DEFAULT_NODE, value_name = "URL")]
    pub node: String,
    /// Print JSON instead of readable text (client commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for each request (client commands).
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Show the node's view of the cluster: members, partitions, storage.
    Status,
    /// Print a key's value (concurrent versions as the JSON siblings document).
    Get(GetArgs),
    /// Write a value; it supersedes the versions the node returns for the key.
    Put(PutArgs),
    /// Delete a key; the tombstone supersedes the versions the node returns.
    Delete(DeleteArgs),
    /// Ask the node to hand its partitions to the others and leave the cluster.
    Leave,
    /// Remove a member that is gone for good; its data is re-replicated.
    Remove(RemoveArgs),
    /// Exit 0 if the node answers GET /health with 200 (for health checks).
    #[command(hide = true)]
    Health,
}

/// `dynamo get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The key (any bytes; percent-encoded on the wire).
    pub key: OsString,
    /// Read quorum (default: the node's R).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub r: Option<u32>,
}

/// `dynamo put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The key.
    pub key: OsString,
    /// The value, or `-` to read it from stdin.
    #[arg(value_name = "VALUE|-")]
    pub value: OsString,
    /// Write without reading the key's context first: the write supersedes
    /// nothing, so it becomes a sibling of whatever the key holds.
    #[arg(long)]
    pub blind: bool,
    /// Content-Type stored with the value (default application/octet-stream).
    #[arg(long, short = 't', value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Write quorum (default: the node's W).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub w: Option<u32>,
}

/// `dynamo delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The key.
    pub key: OsString,
    /// Write quorum (default: the node's W).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub w: Option<u32>,
}

/// `dynamo remove`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// Id of the member to remove.
    #[arg(value_name = "NODE")]
    pub node_id: String,
}

/// Why a command failed: one line for stderr and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_USAGE, message)
    }

    fn failed(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_FAILED, message)
    }
}

type Outcome = Result<(), Failure>;

/// Run a client command and map its outcome to an exit code (the message
/// of a failure goes to stderr, on one line).
pub fn run(opts: ClientOpts, command: ClientCommand) -> ExitCode {
    let result = match actix_rt::System::new().block_on(run_command(opts, command)) {
        Ok(()) => EXIT_OK,
        Err(f) => {
            eprintln!("dynamo: {}", one_line(&f.message));
            f.code
        }
    };
    ExitCode::from(result)
}

async fn run_command(opts: ClientOpts, command: ClientCommand) -> Outcome {
    let client = Client::new(&opts)?;
    let json = opts.json;
    match command {
        ClientCommand::Status => status(&client, json).await,
        ClientCommand::Get(args) => get(&client, json, args).await,
        ClientCommand::Put(args) => put(&client, json, args).await,
        ClientCommand::Delete(args) => delete(&client, json, args).await,
        ClientCommand::Leave => leave(&client, json).await,
        ClientCommand::Remove(args) => remove(&client, json, args).await,
        ClientCommand::Health => health(&client).await,
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// One node's HTTP API.
struct Client {
    /// `http://host:port`, no trailing slash.
    base: String,
    http: awc::Client,
    token: Option<HeaderValue>,
    timeout: Duration,
}

/// A response, body read in full.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A non-empty `X-Context`.
    fn context(&self) -> Option<String> {
        self.header(X_CONTEXT)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    fn coordinator(&self) -> Option<&str> {
        self.header(X_COORDINATOR)
    }

    fn replicas(&self) -> Option<u64> {
        self.header(X_REPLICAS).and_then(|v| v.trim().parse().ok())
    }

    fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::failed(format!(
                "the node answered {} with a body that is not JSON: {e}",
                self.status
            ))
        })
    }

    /// The failure this (unexpected) answer stands for: the code from its
    /// status, the message from its JSON error body when it has one.
    fn failure(&self, what: &str) -> Failure {
        let code = match self.status.as_u16() {
            404 => EXIT_NOT_FOUND,
            400..=499 => EXIT_REFUSED,
            _ => EXIT_FAILED,
        };
        let detail = match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) if v.get("message").is_some_and(Value::is_string) => {
                let message = v["message"].as_str().unwrap_or_default();
                match v.get("error").and_then(Value::as_str) {
                    Some(kind) => format!("{kind}: {message}"),
                    None => message.to_string(),
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&self.body);
                let text = text.trim();
                if text.is_empty() {
                    "(no body)".to_string()
                } else {
                    truncate(text, 200)
                }
            }
        };
        Failure::new(code, format!("{what}: {} {detail}", self.status))
    }
}

impl Client {
    fn new(opts: &ClientOpts) -> Result<Client, Failure> {
        let base = node_base(&opts.node)?;
        if !(opts.timeout.is_finite() && opts.timeout > 0.0 && opts.timeout <= 86_400.0) {
            return Err(Failure::usage(format!(
                "--timeout {} must be a number of seconds above 0",
                opts.timeout
            )));
        }
        let timeout = Duration::from_secs_f64(opts.timeout);
        let token = match std::env::var("DYNAMO_CLIENT_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Some(
                HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| Failure::usage("DYNAMO_CLIENT_TOKEN is not a valid header value"))?,
            ),
            _ => None,
        };
        let http = awc::Client::builder()
            .timeout(timeout)
            .disable_redirects()
            .connector(awc::Connector::new().timeout(timeout))
            .finish();
        Ok(Client {
            base,
            http,
            token,
            timeout,
        })
    }

    /// Send one request and read the whole answer, within the timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {url}");
        let mut req = self.http.request(method, url.as_str());
        if let Some(t) = &self.token {
            req = req.insert_header((AUTHORIZATION, t.clone()));
        }
        for (name, value) in headers {
            req = req.insert_header((name.clone(), value.clone()));
        }
        let exchange = async {
            let sent = match body {
                Some(b) => req.send_body(b).await,
                None => req.send().await,
            };
            let mut resp = sent.map_err(|e| Failure::failed(format!("{what}: {e}")))?;
            let body = resp
                .body()
                .limit(MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| Failure::failed(format!("{what}: reading the answer: {e}")))?;
            Ok(Reply {
                status: resp.status(),
                headers: resp.headers().clone(),
                body: body.to_vec(),
            })
        };
        match actix_rt::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::failed(format!("{what}: no answer within {:?}", self.timeout))),
        }
    }

    async fn get(&self, path: &str, headers: &[(HeaderName, HeaderValue)]) -> Result<Reply, Failure> {
        self.send(Method::GET, path, headers, None).await
    }
}

/// `--node` as a base URL: `http://host:port` (the scheme may be left out),
/// without a trailing slash.
fn node_base(node: &str) -> Result<String, Failure> {
    let node = node.trim();
    let with_scheme = if node.contains("://") {
        node.to_string()
    } else {
        format!("http://{node}")
    };
    let with_scheme = match with_scheme.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.trim_end_matches('/')),
        None => with_scheme,
    };
    let bad = |why: &str| Failure::usage(format!("--node {node:?} {why}; want http://HOST:PORT"));
    let uri: Uri = with_scheme.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("has an unsupported scheme (only plain http)")),
        None => return Err(bad("has no scheme")),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => return Err(bad("has no host")),
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(bad("has a path"));
    }
    Ok(with_scheme)
}

fn key_bytes(key: &OsString) -> Result<&[u8], Failure> {
    let bytes = key.as_bytes();
    if bytes.is_empty() {
        return Err(Failure::usage("the key must not be empty"));
    }
    Ok(bytes)
}

fn kv_path(key: &[u8], quorum: Option<(&str, u32)>) -> String {
    let mut path = format!("/kv/{}", percent_encoding::percent_encode(key, SEGMENT));
    if let Some((name, q)) = quorum {
        path.push_str(&format!("?{name}={q}"));
    }
    path
}

/// A key for messages: the text if it is UTF-8, escaped.
fn show_key(key: &[u8]) -> String {
    format!("{:?}", truncate(&String::from_utf8_lossy(key), 80))
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push_str("...");
        t
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header(name: HeaderName, value: &str) -> Result<(HeaderName, HeaderValue), Failure> {
    HeaderValue::from_str(value)
        .map(|v| (name.clone(), v))
        .map_err(|_| Failure::usage(format!("{value:?} is not a valid {name} header value")))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

fn write_stdout(bytes: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::failed(format!("cannot write to stdout: {e}")))
}

fn print_line(line: impl fmt::Display) -> Outcome {
    write_stdout(format!("{line}\n").as_bytes())
}

/// A JSON body as received, one line, newline-terminated.
fn print_body_line(body: &[u8]) -> Outcome {
    let mut b = body.to_vec();
    while b.last().is_some_and(u8::is_ascii_whitespace) {
        b.pop();
    }
    b.push(b'\n');
    write_stdout(&b)
}

fn print_json(v: &Value) -> Outcome {
    print_line(v)
}

/// How many replicas and which coordinator, for readable output.
fn via(reply: &Reply) -> String {
    match (reply.coordinator(), reply.replicas()) {
        (Some(c), Some(n)) => format!(" (coordinator {c}, {n} replicas)"),
        (Some(c), None) => format!(" (coordinator {c})"),
        _ => String::new(),
    }
}

fn write_summary(key: &[u8], reply: &Reply) -> Value {
    json!({
        "key": String::from_utf8_lossy(key),
        "context": reply.context(),
        "coordinator": reply.coordinator(),
        "replicas": reply.replicas(),
    })
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

async fn get(client: &Client, json: bool, args: GetArgs) -> Outcome {
    let key = key_bytes(&args.key)?;
    let mut headers = Vec::new();
    if json {
        headers.push((ACCEPT, HeaderValue::from_static("application/json")));
    }
    let reply = client.get(&kv_path(key, args.r.map(|r| ("r", r))), &headers).await?;
    match reply.status.as_u16() {
        200 if !json => {
            write_stdout(&reply.body)?;
            // A terminal gets its prompt back on a line of its own; pipes and
            // files get the exact bytes.
            if std::io::stdout().is_terminal() && !reply.body.is_empty() && !reply.body.ends_with(b"\n") {
                write_stdout(b"\n")?;
            }
            Ok(())
        }
        200 | 300 => print_body_line(&reply.body),
        404 => Err(Failure::new(EXIT_NOT_FOUND, format!("key {} not found", show_key(key)))),
        _ => Err(reply.failure(&format!("get {}", show_key(key)))),
    }
}

/// What a read before a write saw: the key's context (`None` when it was
/// never written) and whether it held a live value. With the context, a
/// write supersedes every version the node returned.
struct Seen {
    context: Option<String>,
    found: bool,
}

async fn read_context(client: &Client, key: &[u8], op: &str) -> Result<Seen, Failure> {
    let reply = client.get(&kv_path(key, None), &[]).await?;
    match reply.status.as_u16() {
        200 | 300 | 404 => Ok(Seen {
            context: reply.context(),
            found: reply.status != StatusCode::NOT_FOUND,
        }),
        _ => {
            let mut f = reply.failure(&format!("{op} {}: reading its context first", show_key(key)));
            if op == "put" {
                f.message.push_str(" (--blind writes without it)");
            }
            Err(f)
        }
    }
}

async fn put(client: &Client, json: bool, args: PutArgs) -> Outcome {
    let key = key_bytes(&args.key)?;
    let value = if args.value.as_bytes() == b"-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Failure::failed(format!("cannot read the value from stdin: {e}")))?;
        if buf.len() as u64 > MAX_STDIN_BYTES {
            return Err(Failure::usage(format!(
                "the value on stdin is over {MAX_STDIN_BYTES} bytes"
            )));
        }
        buf
    } else {
        args.value.as_bytes().to_vec()
    };
    let context = if args.blind {
        None
    } else {
        read_context(client, key, "put").await?.context
    };
    let mut headers = Vec::new();
    if let Some(ctx) = &context {
        headers.push(header(HeaderName::from_static(X_CONTEXT), ctx)?);
    }
    if let Some(ct) = &args.content_type {
        headers.push(header(CONTENT_TYPE, ct)?);
    }
    let path = kv_path(key, args.w.map(|w| ("w", w)));
    let reply = client.send(Method::PUT, &path, &headers, Some(value)).await?;
    if reply.status != StatusCode::NO_CONTENT && !reply.status.is_success() {
        return Err(reply.failure(&format!("put {}", show_key(key))));
    }
    if json {
        let mut v = write_summary(key, &reply);
        v["superseded"] = json!(context.is_some());
        print_json(&v)
    } else {
        print_line(format!("stored {}{}", show_key(key), via(&reply)))
    }
}

async fn delete(client: &Client, json: bool, args: DeleteArgs) -> Outcome {
    let key = key_bytes(&args.key)?;
    let seen = read_context(client, key, "delete").await?;
    let mut headers = Vec::new();
    if let Some(ctx) = &seen.context {
        headers.push(header(HeaderName::from_static(X_CONTEXT), ctx)?);
    }
    let path = kv_path(key, args.w.map(|w| ("w", w)));
    let reply = client.send(Method::DELETE, &path, &headers, None).await?;
    if reply.status != StatusCode::NO_CONTENT && !reply.status.is_success() {
        return Err(reply.failure(&format!("delete {}", show_key(key))));
    }
    if json {
        let mut v = write_summary(key, &reply);
        v["found"] = json!(seen.found);
        print_json(&v)
    } else {
        let note = if seen.found { "" } else { " (it was not found)" };
        print_line(format!("deleted {}{}{note}", show_key(key), via(&reply)))
    }
}

async fn leave(client: &Client, json: bool) -> Outcome {
    let reply = client.send(Method::POST, "/admin/leave", &[], Some(Vec::new())).await?;
    if !reply.status.is_success() {
        return Err(reply.failure("leave"));
    }
    if json {
        return print_json(&json!({"status": reply.status.as_u16(), "node": client.base}));
    }
    print_line(format!(
        "{} is leaving: it hands its partitions to the others, then exits",
        client.base
    ))
}

async fn remove(client: &Client, json: bool, args: RemoveArgs) -> Outcome {
    if args.node_id.is_empty() {
        return Err(Failure::usage("the node id must not be empty"));
    }
    let path = format!(
        "/admin/remove/{}",
        percent_encoding::utf8_percent_encode(&args.node_id, SEGMENT)
    );
    let reply = client.send(Method::POST, &path, &[], Some(Vec::new())).await?;
    if !reply.status.is_success() {
        return Err(reply.failure(&format!("remove {:?}", args.node_id)));
    }
    if json {
        return print_json(&json!({"status": reply.status.as_u16(), "removed": args.node_id}));
    }
    print_line(format!(
        "removing {}: its partitions are re-replicated from the surviving replicas",
        args.node_id
    ))
}

async fn health(client: &Client) -> Outcome {
    let reply = client.get("/health", &[]).await?;
    if reply.status != StatusCode::OK {
        return Err(Failure::failed(reply.failure("health").message));
    }
    print_body_line(&reply.body)
}

async fn status(client: &Client, json: bool) -> Outcome {
    let reply = client.get("/status", &[]).await?;
    if reply.status != StatusCode::OK {
        return Err(reply.failure("status"));
    }
    if json {
        return print_body_line(&reply.body);
    }
    let v = reply.json()?;
    let text = render_status(&v);
    write_stdout(text.as_bytes())
}

// ---------------------------------------------------------------------------
// Readable status
// ---------------------------------------------------------------------------

/// A JSON scalar for display, `?` when absent.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "?".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn show_ms(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        // An unknown age is reported as a huge number.
        Some(ms) if ms >= 1e15 => "never".into(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => show_duration(ms / 1000.0),
    }
}

fn show_duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86_400.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else {
        format!("{}d{:02}h", (s / 86_400.0) as u64, ((s % 86_400.0) / 3600.0) as u64)
    }
}

fn show_bytes(v: &Value) -> String {
    let Some(b) = v.as_f64() else {
        return "?".into();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b:.0} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

fn render_status(v: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "node {}  (dynamo {}, up {})",
            show(&v["node_id"]),
            show(&v["version"]),
            v["uptime_s"].as_f64().map_or("?".into(), show_duration)
        ),
    );
    line(
        &mut out,
        format!(
            "N={} R={} W={}  partitions {}",
            show(&v["n"]),
            show(&v["r"]),
            show(&v["w"]),
            show(&v["partitions"])
        ),
    );
    line(
        &mut out,
        format!(
            "storage: {} keys, {}   hints: {} pending, {} delivered",
            show(&v["storage"]["keys"]),
            show_bytes(&v["storage"]["bytes"]),
            show(&v["hints"]["pending"]),
            show(&v["hints"]["delivered"])
        ),
    );
    let ae = &v["anti_entropy"];
    line(
        &mut out,
        format!(
            "anti-entropy: {} exchanges, {} keys repaired, last {}",
            show(&ae["exchanges"]),
            show(&ae["keys_repaired"]),
            if ae["last_exchange_ms"].is_null() {
                "never".to_string()
            } else {
                format!("{} ago", show_ms(&ae["last_exchange_ms"]))
            }
        ),
    );
    if let Some(reqs) = v["requests"].as_object() {
        let ops: Vec<String> = ["get", "put", "delete"]
            .iter()
            .filter_map(|op| reqs.get(*op).map(|r| (op, r)))
            .map(|(op, r)| {
                format!(
                    "{op} {} ({} errors, p50 {} ms, p99 {} ms)",
                    show(&r["count"]),
                    show(&r["errors"]),
                    show(&r["p50_ms"]),
                    show(&r["p99_ms"])
                )
            })
            .collect();
        if !ops.is_empty() {
            line(&mut out, format!("requests: {}", ops.join(", ")));
        }
    }
    let members = v["members"].as_array().cloned().unwrap_or_default();
    line(&mut out, String::new());
    let header = ["MEMBER", "STATUS", "OWNED", "REPLICATED", "LAST SEEN", "HTTP", "PEER"];
    let mut rows: Vec<[String; 7]> = vec![header.map(String::from)];
    for m in &members {
        rows.push([
            show(&m["node_id"]),
            show(&m["status"]),
            show(&m["partitions_owned"]),
            show(&m["partitions_replicated"]),
            show_ms(&m["last_seen_ms"]),
            show(&m["http_addr"]),
            show(&m["peer_addr"]),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths.iter())
            .enumerate()
            .map(|(i, (cell, w))| {
                // Numbers right-aligned, text left-aligned.
                if (2..=3).contains(&i) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        line(&mut out, cells.join("  ").trim_end().to_string());
    }
    line(&mut out, format!("{} members", members.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls() {
        assert_eq!(
            node_base("http://127.0.0.1:8001/").ok(),
            Some("http://127.0.0.1:8001".into())
        );
        assert_eq!(node_base("localhost:8002").ok(), Some("http://localhost:8002".into()));
        for bad in ["https://a:1", "http://", "not a url", "http://a:1/x", ""] {
            assert!(node_base(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_are_one_segment() {
        assert_eq!(kv_path(b"a/b c", None), "/kv/a%2Fb%20c");
        assert_eq!(kv_path(b"k-1.x_~", Some(("w", 3))), "/kv/k-1.x_~?w=3");
        assert_eq!(kv_path(&[0, 255], None), "/kv/%00%FF");
    }

    #[test]
    fn status_renders_whatever_is_there() {
        let text = render_status(&json!({"node_id": "n1", "members": [
            {"node_id": "n1", "status": "up", "partitions_owned": 3, "last_seen_ms": 0},
            {"node_id": "n2", "status": "down", "last_seen_ms": 18446744073709551615u64}
        ]}));
        assert!(text.contains("node n1"), "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(text.contains("2 members"), "{text}");
        let empty = render_status(&json!({}));
        assert!(empty.contains("0 members"), "{empty}");
    }
}
