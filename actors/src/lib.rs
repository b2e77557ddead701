//! dynamo's actors: the processes around the pure core.
//!
//! One actor per long-lived role: the [`replica`] store (RocksDB shards on
//! their own threads), the [`coordinator`] that runs client operations
//! against a key's replicas, the [`gossiper`] that spreads membership, and
//! the [`failure_detector`] that judges which peers are alive, and
//! [`handoff`], which hands hints back to owners that return, and
//! [`anti_entropy`], which compares Merkle trees between replicas, and
//! [`transfer`], which moves partitions when membership changes, and
//! [`hygiene`], which drops retired nodes' entries from clocks;
//! [`group_commit`] shares one fsync among many writes.
//! The [`transport`] carries typed messages between nodes and can be faulted
//! in tests; [`node`] wires one process together.

#![warn(missing_docs)]

pub mod anti_entropy;
pub mod coordinator;
pub mod failure_detector;
pub mod gossiper;
pub mod group_commit;
pub mod handoff;
pub mod hygiene;
pub mod node;
pub mod replica;
pub mod rocks;
pub mod stats;
pub mod transfer;
pub mod transport;

pub use node::{Node, NodeError, NodeOptions};
