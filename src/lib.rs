//! The pure core of dynamo, a Dynamo-style key-value store (DeCandia et al.,
//! SOSP 2007).
//!
//! Everything here is plain data and functions — no IO, no actors, no clock
//! — so it can be tested exhaustively: where keys live ([`ring`]), how
//! versions relate ([`dvv`]), how replica answers add up ([`quorum`]), what
//! the cluster looks like ([`membership`]), the client's context token
//! ([`context`]), configuration ([`config`]), the node-to-node messages
//! ([`wire`]) and the storage interface ([`storage`]), and how fast
//! background work may go ([`pace`]). The actors crate wraps
//! these in processes; the http crate translates requests into them.

#![warn(missing_docs)]

pub mod admission;
pub mod auth;
pub mod config;
pub mod context;
pub mod dvv;
pub mod hygiene;
pub mod membership;
pub mod merkle;
pub mod pace;
pub mod phi;
pub mod quorum;
pub mod ring;
pub mod storage;
pub mod wire;

pub use config::Config;
pub use dvv::{Actor, Dot, Object, Retired, Value, Version, VersionVector};
pub use ring::{NodeId, Ring};
