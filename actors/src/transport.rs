//! Node-to-node transport: typed calls over persistent TCP connections.
//!
//! Every peer gets one connection, opened on first use and reopened after a
//! failure (with a short back-off during which calls fail fast, so a dead
//! peer costs nothing). Frames are length-prefixed (bounded by
//! [`MAX_FRAME_BYTES`]) postcard-encoded [`Frame`]s, written from the
//! buffers they were encoded into and read without copying their payload
//! (see [`Frame::encode_framed`]); each call carries an id, so many calls
//! share the connection and answers may come back in any order. Reading and writing run as separate tasks on both sides, so a
//! full socket in one direction can never stall the other.
//!
//! Callers see only the [`Transport`] trait. Tests wrap it in
//! [`FaultyTransport`] to drop, delay and partition messages between chosen
//! nodes — the network a Dynamo must survive.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_core::auth;
use dynamo_core::wire::{Frame, Framed, PeerRequest, PeerResponse, FRAME_PREFIX_BYTES, MAX_FRAME_BYTES};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// Calls queued for one peer before callers get `Overloaded`.
const QUEUE_PER_PEER: usize = 4096;
/// Calls a connection serves concurrently; more wait (backpressure).
const IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Largest handshake frame (nonces and MACs are a few dozen bytes).
const HANDSHAKE_FRAME_BYTES: usize = 1024;
/// How long each step of the cluster-secret handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(2000);
/// After a failed connect, the next attempt waits this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No answer within the caller's timeout.
    #[error("peer did not answer in time")]
    Timeout,
    /// The peer could not be reached.
    #[error("peer {0} unreachable")]
    Unreachable(String),
    /// The connection closed before the answer came.
    #[error("connection to peer closed")]
    Closed,
    /// Too many calls queued for the peer.
    #[error("too many calls queued for peer")]
    Overloaded,
    /// A frame did not encode or decode.
    #[error("peer protocol error: {0}")]
    Protocol(String),
}

/// Sends requests to peers, by peer address.
pub trait Transport {
    /// Call `peer` and wait at most `timeout` for the answer.
    fn call(
        &self,
        peer: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<PeerResponse, TransportError>>;
}

/// Serves requests from peers.
pub trait PeerHandler {
    /// Answer one request.
    fn handle(&self, request: PeerRequest) -> LocalBoxFuture<'static, PeerResponse>;
}

/// The reading side's framing: what [`Frame::encode_framed`] writes.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(FRAME_PREFIX_BYTES)
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// Frames a vectored write takes at most (Linux allows 1024 buffers).
const FRAMES_PER_WRITE: usize = 256;

/// The writing side of a connection. Frames come encoded with their length
/// prefix, their payloads apart ([`Frame::encode_framed`]), and are written
/// from their own buffers, the queued ones together in one vectored write:
/// a codec would first copy each into a buffer of its own, a MB for a
/// partition chunk.
struct FrameSink {
    socket: OwnedWriteHalf,
    queued: std::collections::VecDeque<Bytes>,
}

impl FrameSink {
    fn new(socket: OwnedWriteHalf) -> FrameSink {
        FrameSink {
            socket,
            queued: Default::default(),
        }
    }

    /// Queue a frame; nothing is written until [`FrameSink::flush`].
    fn feed(&mut self, framed: Framed) {
        self.queued.push_back(Bytes::from(framed.head));
        self.queued.extend(framed.payload);
    }

    /// Write everything queued.
    async fn flush(&mut self) -> std::io::Result<()> {
        while !self.queued.is_empty() {
            let slices: Vec<std::io::IoSlice<'_>> = self
                .queued
                .iter()
                .take(FRAMES_PER_WRITE)
                .map(|frame| std::io::IoSlice::new(frame))
                .collect();
            let mut written = self.socket.write_vectored(&slices).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while let Some(front) = self.queued.front_mut() {
                if written < front.len() {
                    bytes::Buf::advance(front, written);
                    break;
                }
                written -= front.len();
                self.queued.pop_front();
            }
        }
        Ok(())
    }

    /// Write one frame now.
    async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        self.feed(frame.encode_framed().map_err(|e| e.to_string())?);
        self.flush().await.map_err(|e| e.to_string())
    }
}

type Reply = oneshot::Sender<Result<PeerResponse, TransportError>>;

struct Call {
    request: PeerRequest,
    reply: Reply,
}

/// The cluster secret, shared by a node's transports and peer server.
pub type Secret = Option<Arc<[u8]>>;

/// The TCP transport. Lives on one arbiter thread (its connection tasks are
/// local tasks), like the actors that use it.
#[derive(Default)]
pub struct TcpTransport {
    peers: RefCell<HashMap<String, mpsc::Sender<Call>>>,
    secret: Secret,
}

impl TcpTransport {
    /// A transport with no connections yet; with a secret, every connection
    /// proves it holds it (and checks the peer does) before any call.
    pub fn new(secret: Secret) -> Self {
        TcpTransport {
            peers: RefCell::default(),
            secret,
        }
    }

    fn sender(&self, peer: &str) -> mpsc::Sender<Call> {
        let mut peers = self.peers.borrow_mut();
        if let Some(tx) = peers.get(peer).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
        tokio::task::spawn_local(run_connection(peer.to_string(), rx, self.secret.clone()));
        peers.insert(peer.to_string(), tx.clone());
        tx
    }
}

impl Transport for TcpTransport {
    fn call(
        &self,
        peer: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<PeerResponse, TransportError>> {
        let (reply, answer) = oneshot::channel();
        let queued = self.sender(peer).try_send(Call { request, reply });
        async move {
            match queued {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => return Err(TransportError::Overloaded),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(TransportError::Closed),
            }
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(TransportError::Closed),
                Err(_) => Err(TransportError::Timeout),
            }
        }
        .boxed_local()
    }
}

/// Calls sent on the current connection and not yet answered.
type Pending = Rc<RefCell<HashMap<u64, Reply>>>;

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>;

/// Read one frame within the handshake deadline.
async fn next_frame(frames: &mut Reader) -> Result<Frame, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next()).await {
        Ok(Some(Ok(bytes))) => Frame::decode_shared(bytes.freeze()).map_err(|e| e.to_string()),
        Ok(Some(Err(e))) => Err(e.to_string()),
        Ok(None) => Err("connection closed".into()),
        Err(_) => Err("timed out".into()),
    }
}

fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; auth::NONCE_LEN];
    rand::thread_rng().fill(&mut n[..]);
    n
}

/// Connecting side of the handshake (see `dynamo_core::auth`).
async fn authenticate_to(secret: &[u8], frames: &mut Reader, sink: &mut FrameSink) -> Result<(), String> {
    let mine = nonce();
    sink.send(&Frame::Hello { nonce: mine.clone() }).await?;
    let (theirs, proof) = match next_frame(frames).await? {
        Frame::Challenge { nonce, proof } => (nonce, proof),
        _ => return Err("the peer did not answer the handshake".into()),
    };
    if theirs.len() != auth::NONCE_LEN || !auth::verify_server(secret, &mine, &theirs, &proof) {
        return Err("the peer does not hold the cluster secret".into());
    }
    sink.send(&Frame::Proof {
        proof: auth::client_proof(secret, &theirs, &mine),
    })
    .await
}

/// Accepting side of the handshake.
async fn authenticate_from(secret: &[u8], frames: &mut Reader, sink: &mut FrameSink) -> Result<(), String> {
    let theirs = match next_frame(frames).await? {
        Frame::Hello { nonce } if nonce.len() == auth::NONCE_LEN => nonce,
        _ => return Err("it did not start with the cluster-secret handshake".into()),
    };
    let mine = nonce();
    sink.send(&Frame::Challenge {
        nonce: mine.clone(),
        proof: auth::server_proof(secret, &theirs, &mine),
    })
    .await?;
    match next_frame(frames).await? {
        Frame::Proof { proof } if auth::verify_client(secret, &mine, &theirs, &proof) => Ok(()),
        _ => Err("it does not hold the cluster secret".into()),
    }
}

/// Owns the connection to one peer for the life of the transport.
async fn run_connection(addr: String, mut calls: mpsc::Receiver<Call>, secret: Secret) {
    let mut down_until: Option<Instant> = None;
    while let Some(first) = calls.recv().await {
        // Right after a failed connect, wait out the back-off instead of
        // failing: a peer that is just starting answers a moment later, and
        // every caller still has its own timeout.
        if let Some(t) = down_until {
            tokio::time::sleep_until(t.into()).await;
        }
        if first.reply.is_closed() {
            continue;
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                down_until = Some(Instant::now() + RECONNECT_BACKOFF);
                // Everything already waiting was meant for this attempt.
                let _ = first.reply.send(Err(TransportError::Unreachable(addr.clone())));
                while let Ok(queued) = calls.try_recv() {
                    let _ = queued.reply.send(Err(TransportError::Unreachable(addr.clone())));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut frames = FramedRead::new(read, codec());
        let mut sink = FrameSink::new(write);
        if let Some(secret) = &secret {
            if let Err(e) = authenticate_to(secret, &mut frames, &mut sink).await {
                log::warn!("peer {addr} refused: {e}");
                down_until = Some(Instant::now() + RECONNECT_BACKOFF);
                let _ = first.reply.send(Err(TransportError::Unreachable(addr.clone())));
                continue;
            }
        }
        down_until = None;
        let pending: Pending = Rc::default();
        let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
        let reader = tokio::task::spawn_local(read_responses(frames, pending.clone(), closed_tx));
        let mut next_id: u64 = 0;
        let mut call = Some(first);
        loop {
            // Write every queued call, then flush once: one syscall for a burst.
            while let Some(Call { request, reply }) = call.take() {
                next_id += 1;
                let frame = Frame::Request {
                    id: next_id,
                    body: request,
                };
                match frame.encode_framed() {
                    Ok(bytes) => {
                        if reply.is_closed() {
                            // The caller gave up already; do not send.
                        } else {
                            pending.borrow_mut().insert(next_id, reply);
                            sink.feed(bytes);
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(TransportError::Protocol(e.to_string())));
                    }
                }
                call = calls.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                break;
            }
            tokio::select! {
                next = calls.recv() => match next {
                    Some(c) => call = Some(c),
                    None => break,
                },
                _ = &mut closed_rx => break,
            }
            // Forget calls whose callers timed out, so a silent peer cannot
            // grow the map without bound.
            if pending.borrow().len() > IN_FLIGHT_PER_CONNECTION * 4 {
                pending.borrow_mut().retain(|_, reply| !reply.is_closed());
            }
        }
        reader.abort();
        for (_, reply) in pending.borrow_mut().drain() {
            let _ = reply.send(Err(TransportError::Closed));
        }
    }
}

async fn read_responses(
    mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
    pending: Pending,
    closed: oneshot::Sender<()>,
) {
    while let Some(Ok(bytes)) = frames.next().await {
        match Frame::decode_shared(bytes.freeze()) {
            Ok(Frame::Response { id, body }) => {
                if let Some(reply) = pending.borrow_mut().remove(&id) {
                    let _ = reply.send(Ok(body));
                }
            }
            Ok(_) | Err(_) => {
                log::warn!("peer sent an unexpected or undecodable frame; closing connection");
                break;
            }
        }
    }
    let _ = closed.send(());
}

/// Accept peer connections on `listener` and answer their calls with
/// `handler`, until the task is dropped. With a secret, a connection is
/// served only after it proved it holds the secret.
pub async fn serve_peers(listener: TcpListener, handler: Rc<dyn PeerHandler>, secret: Secret) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                log::debug!("peer connection from {remote}");
                tokio::task::spawn_local(serve_connection(stream, remote, handler.clone(), secret.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, do not spin.
                log::warn!("accepting a peer connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: std::net::SocketAddr,
    handler: Rc<dyn PeerHandler>,
    secret: Secret,
) {
    let (read, write) = stream.into_split();
    let mut frames = FramedRead::new(read, codec());
    let mut sink = FrameSink::new(write);
    if let Some(secret) = &secret {
        // Until the peer has proved itself, a frame is a handshake message:
        // a few bytes, so a stranger cannot make this node reserve more.
        frames.decoder_mut().set_max_frame_length(HANDSHAKE_FRAME_BYTES);
        if let Err(e) = authenticate_from(secret, &mut frames, &mut sink).await {
            log::warn!("refused peer connection from {remote}: {e}");
            return;
        }
        frames.decoder_mut().set_max_frame_length(MAX_FRAME_BYTES);
    }
    // Room for every permitted in-flight answer, so a handler never blocks
    // on sending its answer while holding a permit.
    let (answers_tx, mut answers_rx) = mpsc::channel::<Framed>(IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::task::spawn_local(async move {
        while let Some(bytes) = answers_rx.recv().await {
            sink.feed(bytes);
            while let Ok(more) = answers_rx.try_recv() {
                sink.feed(more);
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    while let Some(Ok(bytes)) = frames.next().await {
        let (id, request) = match Frame::decode_shared(bytes.freeze()) {
            Ok(Frame::Request { id, body }) => (id, body),
            Ok(Frame::Hello { .. }) => {
                log::warn!("refused peer connection from {remote}: it holds a cluster secret and this node has none");
                break;
            }
            Ok(_) | Err(_) => {
                log::warn!("peer {remote} sent an unexpected or undecodable frame; closing connection");
                break;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let handler = handler.clone();
        let answers = answers_tx.clone();
        tokio::task::spawn_local(async move {
            let body = handler.handle(request).await;
            let frame = Frame::Response { id, body };
            // An answer too large to send goes back as the reason why.
            let framed = frame.encode_framed().or_else(|e| {
                Frame::Response {
                    id,
                    body: PeerResponse::Error(e.to_string()),
                }
                .encode_framed()
            });
            if let Ok(framed) = framed {
                let _ = answers.send(framed).await;
            }
            drop(permit);
        });
    }
    drop(answers_tx);
    // Let answers already computed go out; the writer ends with the channel.
    let _ = writer.await;
}

/// Shared fault plan for a set of [`FaultyTransport`]s (tests).
#[derive(Debug)]
pub struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    /// (from, to) peer-address pairs whose messages are lost.
    blocked: HashSet<(String, String)>,
    /// (from, to, request kind) whose requests are lost.
    blocked_kinds: HashSet<(String, String, &'static str)>,
    /// Extra latency per (from, to).
    delays: HashMap<(String, String), Duration>,
    /// Chance that any one message is lost.
    drop_rate: f64,
    rng: StdRng,
}

impl Faults {
    /// No faults; `seed` drives random drops so a run can be replayed.
    pub fn new(seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            state: Mutex::new(FaultState {
                blocked: HashSet::new(),
                blocked_kinds: HashSet::new(),
                delays: HashMap::new(),
                drop_rate: 0.0,
                rng: StdRng::seed_from_u64(seed),
            }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut FaultState) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Cut every link between a node of `left` and a node of `right`, both ways.
    pub fn partition(&self, left: &[&str], right: &[&str]) {
        self.with(|s| {
            for a in left {
                for b in right {
                    s.blocked.insert((a.to_string(), b.to_string()));
                    s.blocked.insert((b.to_string(), a.to_string()));
                }
            }
        })
    }

    /// Restore every link and remove delays and random drops.
    pub fn heal(&self) {
        self.with(|s| {
            s.blocked.clear();
            s.blocked_kinds.clear();
            s.delays.clear();
            s.drop_rate = 0.0;
        })
    }

    /// Lose requests of one kind (see `PeerRequest::kind`) from `from` to `to`.
    pub fn block_kind(&self, from: &str, to: &str, kind: &'static str) {
        self.with(|s| {
            s.blocked_kinds.insert((from.to_string(), to.to_string(), kind));
        })
    }

    /// Delay messages from `from` to `to`.
    pub fn delay(&self, from: &str, to: &str, by: Duration) {
        self.with(|s| {
            s.delays.insert((from.to_string(), to.to_string()), by);
        })
    }

    /// Lose each message with probability `rate`.
    pub fn drop_rate(&self, rate: f64) {
        self.with(|s| s.drop_rate = rate)
    }

    /// What happens to one message from `from` to `to`: `None` if lost,
    /// else the delay to apply.
    fn fate(&self, from: &str, to: &str, kind: Option<&'static str>) -> Option<Duration> {
        self.with(|s| {
            let key = (from.to_string(), to.to_string());
            let lost = s.blocked.contains(&key)
                || kind.is_some_and(|k| s.blocked_kinds.contains(&(key.0.clone(), key.1.clone(), k)))
                || (s.drop_rate > 0.0 && s.rng.gen_bool(s.drop_rate.min(1.0)));
            (!lost).then(|| s.delays.get(&key).copied().unwrap_or_default())
        })
    }
}

/// A transport that loses and delays messages according to shared [`Faults`].
/// Requests and answers are judged separately, so a test also sees calls
/// that were executed but whose answers were lost.
pub struct FaultyTransport {
    inner: Rc<dyn Transport>,
    from: String,
    faults: Arc<Faults>,
}

impl FaultyTransport {
    /// Wrap `inner` for the node whose peer address is `from`.
    pub fn new(inner: Rc<dyn Transport>, from: impl Into<String>, faults: Arc<Faults>) -> Self {
        FaultyTransport {
            inner,
            from: from.into(),
            faults,
        }
    }
}

impl Transport for FaultyTransport {
    fn call(
        &self,
        peer: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<PeerResponse, TransportError>> {
        let outbound = self.faults.fate(&self.from, peer, Some(request.kind()));
        let inbound = self.faults.fate(peer, &self.from, None);
        let inner = self.inner.clone();
        let peer = peer.to_string();
        async move {
            let Some(delay) = outbound else {
                tokio::time::sleep(timeout).await;
                return Err(TransportError::Timeout);
            };
            let started = Instant::now();
            tokio::time::sleep(delay).await;
            let result = inner.call(&peer, request, timeout.saturating_sub(delay)).await;
            match inbound {
                Some(back) => {
                    tokio::time::sleep(back).await;
                    if started.elapsed() > timeout {
                        return Err(TransportError::Timeout);
                    }
                    result
                }
                None => {
                    tokio::time::sleep(timeout.saturating_sub(started.elapsed())).await;
                    Err(TransportError::Timeout)
                }
            }
        }
        .boxed_local()
    }
}
