//! Node configuration: one struct, every field defaulted and documented.
//!
//! Each setting has one name used three ways (SPEC §2): a flat key in the
//! TOML file, a `--flag`, and a `DYNAMO_*` environment variable; flag beats
//! env beats file beats default. This module owns the file format, the
//! defaults and validation; the binary layers flags and env on top with
//! [`Config::apply`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a configuration was refused. Each message is one line that names the
/// problem, printed before the node exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct (unknown key, bad type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Every setting of a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique in the cluster (default: the host name).
    pub node_id: String,
    /// Client HTTP API address.
    pub http_addr: String,
    /// Node-to-node address; the one other nodes and `seeds` use.
    pub peer_addr: String,
    /// Where RocksDB and the node's identity live (default `./data/<node_id>`).
    pub data_dir: Option<PathBuf>,
    /// Peer addresses of members to join (this node's own is ignored).
    pub seeds: Vec<String>,
    /// Replicas per key.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// Partitions of the ring (Q), fixed when the cluster is created.
    pub partitions: u32,
    /// Relative capacity: partitions owned are proportional to it.
    pub weight: u32,
    /// Largest accepted value, in bytes.
    pub max_value_bytes: usize,
    /// How long a coordinator waits for a quorum.
    pub request_timeout_ms: u64,
    /// Pause between gossip rounds.
    pub gossip_interval_ms: u64,
    /// Pause between two anti-entropy exchanges.
    pub anti_entropy_interval_ms: u64,
    /// fsync every acknowledged write (survives power loss) instead of only
    /// writing it to the WAL (survives a process crash).
    pub sync_writes: bool,
    /// Shared secret peers must prove they hold; also keys context tokens.
    pub cluster_secret: Option<String>,
    /// Bearer token clients must present (every route but `/health`).
    pub client_token: Option<String>,
    /// HTTP worker threads (default: one per two cores, at least one — the
    /// peer server and storage threads need the rest).
    pub http_workers: usize,
    /// Bytes (keys and objects) per second a partition transfer (join,
    /// leave, remove) moves at most, so a rebalance leaves room for client
    /// requests (Cassandra's stream throughput limit).
    pub transfer_bytes_per_sec: u64,
    /// Hints per second hinted handoff delivers at most (Cassandra's hint
    /// throttle), so an owner coming back does not crowd out clients.
    pub handoff_hints_per_sec: u64,
    /// Admission control of background work (Dynamo §6.5): a transfer step
    /// waits while clients are slower than this percentage of their latency
    /// without background work (0: never waits).
    pub background_latency_percent: u32,
}

/// Largest key, in bytes (SPEC §3).
pub const MAX_KEY_BYTES: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: default_node_id(),
            http_addr: "127.0.0.1:8000".into(),
            peer_addr: "127.0.0.1:9000".into(),
            data_dir: None,
            seeds: Vec::new(),
            n: 3,
            r: 2,
            w: 2,
            partitions: 64,
            weight: 1,
            max_value_bytes: 1024 * 1024,
            request_timeout_ms: 2000,
            gossip_interval_ms: 1000,
            anti_entropy_interval_ms: 500,
            sync_writes: false,
            cluster_secret: None,
            client_token: None,
            http_workers: default_http_workers(),
            transfer_bytes_per_sec: 64 * 1024 * 1024,
            background_latency_percent: 150,
            handoff_hints_per_sec: 5_000,
        }
    }
}

fn default_http_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "dynamo".into())
}

/// Settings given on the command line or in the environment; `None` means
/// "not given here", so a lower layer decides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// See [`Config::node_id`].
    pub node_id: Option<String>,
    /// See [`Config::http_addr`].
    pub http_addr: Option<String>,
    /// See [`Config::peer_addr`].
    pub peer_addr: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::seeds`].
    pub seeds: Option<Vec<String>>,
    /// See [`Config::n`].
    pub n: Option<usize>,
    /// See [`Config::r`].
    pub r: Option<usize>,
    /// See [`Config::w`].
    pub w: Option<usize>,
    /// See [`Config::partitions`].
    pub partitions: Option<u32>,
    /// See [`Config::weight`].
    pub weight: Option<u32>,
    /// See [`Config::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
    /// See [`Config::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// See [`Config::gossip_interval_ms`].
    pub gossip_interval_ms: Option<u64>,
    /// See [`Config::anti_entropy_interval_ms`].
    pub anti_entropy_interval_ms: Option<u64>,
    /// See [`Config::sync_writes`].
    pub sync_writes: Option<bool>,
    /// See [`Config::cluster_secret`].
    pub cluster_secret: Option<String>,
    /// See [`Config::client_token`].
    pub client_token: Option<String>,
    /// See [`Config::http_workers`].
    pub http_workers: Option<usize>,
    /// See [`Config::transfer_bytes_per_sec`].
    pub transfer_bytes_per_sec: Option<u64>,
    /// See [`Config::handoff_hints_per_sec`].
    pub handoff_hints_per_sec: Option<u64>,
    /// See [`Config::background_latency_percent`].
    pub background_latency_percent: Option<u32>,
}

impl Config {
    /// Parse a TOML document (unknown keys are errors).
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().replace('\n', " "),
        })
    }

    /// Read and parse a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Lay `o` over this config.
    pub fn apply(mut self, o: Overrides) -> Config {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = o.$field { self.$field = v; } )* };
        }
        take!(
            node_id,
            http_addr,
            peer_addr,
            seeds,
            n,
            r,
            w,
            partitions,
            weight,
            max_value_bytes,
            request_timeout_ms,
            gossip_interval_ms,
            anti_entropy_interval_ms,
            sync_writes,
            http_workers,
            transfer_bytes_per_sec,
            handoff_hints_per_sec,
            background_latency_percent
        );
        if o.data_dir.is_some() {
            self.data_dir = o.data_dir;
        }
        if o.cluster_secret.is_some() {
            self.cluster_secret = o.cluster_secret;
        }
        if o.client_token.is_some() {
            self.client_token = o.client_token;
        }
        self
    }

    /// The data dir, defaulted from the node id.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(&self.node_id))
    }

    /// Seeds other than this node itself.
    pub fn other_seeds(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && *s != self.peer_addr)
            .collect()
    }

    /// Check ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id.is_empty() || self.node_id.len() > 255 {
            return bad("node_id must be 1 to 255 bytes".into());
        }
        if self.n == 0 || self.n > 64 {
            return bad(format!("n = {} must be between 1 and 64", self.n));
        }
        if self.r == 0 || self.r > self.n {
            return bad(format!("r = {} must be between 1 and n = {}", self.r, self.n));
        }
        if self.w == 0 || self.w > self.n {
            return bad(format!("w = {} must be between 1 and n = {}", self.w, self.n));
        }
        if self.partitions == 0 || self.partitions > 65_536 {
            return bad(format!("partitions = {} must be between 1 and 65536", self.partitions));
        }
        if self.weight == 0 || self.weight > 1000 {
            return bad(format!("weight = {} must be between 1 and 1000", self.weight));
        }
        if self.transfer_bytes_per_sec == 0 {
            return bad("transfer_bytes_per_sec must be positive".into());
        }
        if self.handoff_hints_per_sec == 0 {
            return bad("handoff_hints_per_sec must be positive".into());
        }
        if self.background_latency_percent != 0 && !(100..=10_000).contains(&self.background_latency_percent) {
            return bad(format!(
                "background_latency_percent = {} must be 0 (off) or between 100 and 10000",
                self.background_latency_percent
            ));
        }
        if self.http_workers == 0 || self.http_workers > 256 {
            return bad(format!(
                "http_workers = {} must be between 1 and 256",
                self.http_workers
            ));
        }
        if self.max_value_bytes > 64 * 1024 * 1024 {
            return bad(format!("max_value_bytes = {} is over 64 MiB", self.max_value_bytes));
        }
        if self.request_timeout_ms == 0 || self.gossip_interval_ms == 0 || self.anti_entropy_interval_ms == 0 {
            return bad("request_timeout_ms, gossip_interval_ms and anti_entropy_interval_ms must be positive".into());
        }
        for (name, addr) in [("http_addr", &self.http_addr), ("peer_addr", &self.peer_addr)] {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return bad(format!("{name} = {addr:?} is not HOST:PORT"));
            }
        }
        if self.http_addr == self.peer_addr {
            return bad("http_addr and peer_addr must differ".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn unknown_key_is_refused() {
        let err = Config::from_toml("node_id = \"a\"\nbogus = 1\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn layers_apply_in_order() {
        let file = Config::from_toml("n = 5\nr = 3\nseeds = [\"a:1\"]\n", Path::new("x.toml")).unwrap();
        let cfg = file.apply(Overrides {
            r: Some(2),
            ..Overrides::default()
        });
        assert_eq!((cfg.n, cfg.r, cfg.w), (5, 2, 2));
        assert_eq!(cfg.seeds, vec!["a:1".to_string()]);
    }

    #[test]
    fn quorum_above_n_is_refused() {
        let cfg = Config {
            r: 4,
            ..Config::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("r = 4"));
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// `config/example.toml` documents every setting with its default: it
    /// must parse, and must equal the defaults for what it sets.
    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../config/example.toml");
        let parsed = Config::from_toml(text, std::path::Path::new("config/example.toml")).unwrap();
        let defaults = Config::default();
        assert_eq!(parsed, defaults);
        // Machine-dependent defaults are commented out in the file.
        // Every field is mentioned (set or commented out).
        let fields = [
            "node_id",
            "http_addr",
            "peer_addr",
            "data_dir",
            "seeds",
            "n",
            "r",
            "w",
            "partitions",
            "weight",
            "max_value_bytes",
            "request_timeout_ms",
            "gossip_interval_ms",
            "anti_entropy_interval_ms",
            "sync_writes",
            "cluster_secret",
            "client_token",
        ];
        for f in fields {
            assert!(
                text.contains(&format!("{f} = ")),
                "config/example.toml does not mention {f}"
            );
        }
    }
}
