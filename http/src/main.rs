//! The `dynamo` binary: `serve` runs one node, `dev` a local cluster in one
//! process; the client commands (`status`, `get`, `put`, ...) live in `cli`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dynamo_actors::NodeOptions;
use dynamo_core::config::{Config, Overrides};
use dynamo_http::server;

/// A node allocates and frees a buffer or two per message on every thread;
/// glibc's allocator spent over a tenth of a node's CPU on that in the PUT
/// benchmark (BENCHMARKS.md), mimalloc's thread-local free lists far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dynamo",
    version,
    about = "A Dynamo-style, highly available key-value store",
    after_help = cli::EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    client: cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Serve(Box<ServeArgs>),
    /// Run a local cluster of several nodes in this process (for trying it out).
    Dev(DevArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Every setting: flag, or `DYNAMO_*` env var, over the config file, over
/// the default.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "DYNAMO_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "DYNAMO_NODE_ID")]
    node_id: Option<String>,
    #[arg(long, env = "DYNAMO_HTTP_ADDR")]
    http_addr: Option<String>,
    #[arg(long, env = "DYNAMO_PEER_ADDR")]
    peer_addr: Option<String>,
    #[arg(long, env = "DYNAMO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Peer addresses of members, comma-separated.
    #[arg(long, env = "DYNAMO_SEEDS", value_delimiter = ',')]
    seeds: Option<Vec<String>>,
    #[arg(long, env = "DYNAMO_N")]
    n: Option<usize>,
    #[arg(long, env = "DYNAMO_R")]
    r: Option<usize>,
    #[arg(long, env = "DYNAMO_W")]
    w: Option<usize>,
    #[arg(long, env = "DYNAMO_PARTITIONS")]
    partitions: Option<u32>,
    #[arg(long, env = "DYNAMO_WEIGHT")]
    weight: Option<u32>,
    #[arg(long, env = "DYNAMO_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    #[arg(long, env = "DYNAMO_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    #[arg(long, env = "DYNAMO_GOSSIP_INTERVAL_MS")]
    gossip_interval_ms: Option<u64>,
    #[arg(long, env = "DYNAMO_ANTI_ENTROPY_INTERVAL_MS")]
    anti_entropy_interval_ms: Option<u64>,
    /// true: fsync every acknowledged write.
    #[arg(long, env = "DYNAMO_SYNC_WRITES")]
    sync_writes: Option<bool>,
    #[arg(long, env = "DYNAMO_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    #[arg(long, env = "DYNAMO_CLIENT_TOKEN", hide_env_values = true)]
    client_token: Option<String>,
    /// HTTP worker threads.
    #[arg(long, env = "DYNAMO_HTTP_WORKERS")]
    http_workers: Option<usize>,
    /// Bytes per second a partition transfer moves at most.
    #[arg(long, env = "DYNAMO_TRANSFER_BYTES_PER_SEC")]
    transfer_bytes_per_sec: Option<u64>,
    /// Hints per second hinted handoff delivers at most.
    #[arg(long, env = "DYNAMO_HANDOFF_HINTS_PER_SEC")]
    handoff_hints_per_sec: Option<u64>,
    /// Transfers wait while clients are slower than this % of their quiet latency (0: off).
    #[arg(long, env = "DYNAMO_BACKGROUND_LATENCY_PERCENT")]
    background_latency_percent: Option<u32>,
}

#[derive(Args)]
struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// HTTP port of the first node; peers listen 1000 above.
    #[arg(long, default_value_t = 8001)]
    base_port: u16,
    /// Where the nodes keep their data (one dir per node).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

impl ServeArgs {
    fn into_config(self) -> Result<Config, dynamo_core::config::ConfigError> {
        let base = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let config = base.apply(Overrides {
            node_id: self.node_id,
            http_addr: self.http_addr,
            peer_addr: self.peer_addr,
            data_dir: self.data_dir,
            seeds: self.seeds,
            n: self.n,
            r: self.r,
            w: self.w,
            partitions: self.partitions,
            weight: self.weight,
            max_value_bytes: self.max_value_bytes,
            request_timeout_ms: self.request_timeout_ms,
            gossip_interval_ms: self.gossip_interval_ms,
            anti_entropy_interval_ms: self.anti_entropy_interval_ms,
            sync_writes: self.sync_writes,
            cluster_secret: self.cluster_secret,
            client_token: self.client_token,
            http_workers: self.http_workers,
            transfer_bytes_per_sec: self.transfer_bytes_per_sec,
            handoff_hints_per_sec: self.handoff_hints_per_sec,
            background_latency_percent: self.background_latency_percent,
        });
        config.validate()?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Dev(args) => dev(args),
        Command::Client(command) => return cli::run(cli.client, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynamo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let listener = server::bind_http(&config.http_addr)?;
    actix_web::rt::System::new().block_on(async move {
        let running = server::start(config, listener, NodeOptions::default()).await?;
        log::info!("node {} serving clients", running.node.config.node_id);
        let handle = running.server.handle();
        let node = running.node.clone();
        // SIGTERM ends the server; a completed leave (or a removal) ends
        // the node: then drain the server the same way.
        let code = tokio::select! {
            served = running.server => {
                served?;
                0
            }
            code = node.exit_requested() => {
                handle.stop(true).await;
                code
            }
        };
        running.node.close();
        log::info!("node {} stopped", running.node.config.node_id);
        if code != 0 {
            anyhow::bail!("node {} was removed from its cluster", running.node.config.node_id);
        }
        Ok(())
    })
}

fn dev(args: DevArgs) -> anyhow::Result<()> {
    let k = args.nodes.max(1);
    let peer_port = |i: u16| args.base_port + 1000 + i;
    let seeds: Vec<String> = (0..k).map(|i| format!("127.0.0.1:{}", peer_port(i))).collect();
    let configs: Vec<Config> = (0..k)
        .map(|i| Config {
            node_id: format!("node{}", i + 1),
            http_addr: format!("127.0.0.1:{}", args.base_port + i),
            peer_addr: seeds[i as usize].clone(),
            data_dir: Some(args.data_dir.join(format!("node{}", i + 1))),
            seeds: seeds.clone(),
            n: 3.min(k as usize),
            r: 2.min(k as usize),
            w: 2.min(k as usize),
            http_workers: 1,
            ..Config::default()
        })
        .collect();
    let mut listeners = Vec::new();
    for c in &configs {
        c.validate()?;
        listeners.push(server::bind_http(&c.http_addr)?);
    }
    actix_web::rt::System::new().block_on(async move {
        let mut servers = Vec::new();
        for (config, listener) in configs.into_iter().zip(listeners) {
            let running = server::start(config, listener, NodeOptions::default()).await?;
            let c = &running.node.config;
            println!(
                "{}: http://{}  (peer {}, data {})",
                c.node_id,
                c.http_addr,
                c.peer_addr,
                c.data_dir().display()
            );
            servers.push(running);
        }
        println!(
            "try: curl -X PUT --data-binary hello http://127.0.0.1:{}/kv/greeting",
            args.base_port
        );
        let nodes: Vec<_> = servers.iter().map(|r| r.node.clone()).collect();
        futures::future::try_join_all(servers.into_iter().map(|r| r.server)).await?;
        for node in nodes {
            node.close();
        }
        Ok(())
    })
}
