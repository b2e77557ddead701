//! Running a node: its actors plus the HTTP server, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use dynamo_actors::{Node, NodeOptions};
use dynamo_core::Config;

use crate::api::{configure, require_token, AppState};
use crate::metrics::RequestMetrics;

/// How long SIGTERM waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Concurrent client connections per worker; more wait in the backlog.
const MAX_CONNECTIONS: usize = 4096;

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP address cannot be bound.
    #[error("cannot listen on http_addr {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node's actors did not start.
    #[error(transparent)]
    Node(#[from] dynamo_actors::NodeError),
    /// The server failed while running.
    #[error("http server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Bind the client HTTP address (done first, so a taken port fails fast).
pub fn bind_http(addr: &str) -> Result<std::net::TcpListener, ServeError> {
    std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// A started node and its HTTP server (not yet awaited).
pub struct Running {
    /// The node.
    pub node: Node,
    /// The server future; resolves after a graceful stop (SIGTERM).
    pub server: actix_web::dev::Server,
}

/// Start a node and serve HTTP on `listener`. Must run inside an actix system.
pub async fn start(
    config: Config,
    listener: std::net::TcpListener,
    options: NodeOptions,
) -> Result<Running, ServeError> {
    let workers = config.http_workers;
    let node = Node::start(config, options).await?;
    let metrics = Arc::new(RequestMetrics::default());
    let shared = node.clone();
    let server = HttpServer::new(move || {
        // Runs once per worker thread: each gets its own coordinator.
        let state = AppState {
            node: shared.clone(),
            coordinator: shared.thread_coordinator(),
            metrics: metrics.clone(),
        };
        App::new()
            .app_data(web::Data::new(state))
            .wrap(actix_web::middleware::from_fn(require_token))
            .configure(configure)
    })
    .workers(workers.max(1))
    .max_connections(MAX_CONNECTIONS)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)?
    .run();
    Ok(Running { node, server })
}
