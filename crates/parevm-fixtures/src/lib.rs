//! Inputs for parevm: block snapshots (real mainnet blocks with their pre-state), their
//! verification against the block header, and synthetic blocks built in code.

#![warn(missing_docs)]

pub mod alloy_oracle;
pub mod analysis;
mod both_paths;
pub mod conformance;
pub mod defi;
pub mod fuzzing;
mod latency;
pub mod prestate_trace;
mod snapshot;
mod state_root;
pub mod synthetic;
mod verify;
pub mod workload;

pub use both_paths::{both_paths, both_paths_with, parallel, racing, sequential};
pub use latency::LatencyStorage;
pub use snapshot::{
    discover_snapshots, load_alloy_transactions, load_block, load_prestate, load_snapshot,
    load_snapshot_with, parse_alloy_transactions, parse_snapshot, snapshot_gas, AlloyTransaction,
    LoadedBlock, Senders, Snapshot, SnapshotError, MAINNET_CHAIN_ID,
};
pub use state_root::state_root;
pub use verify::{FieldCheck, HeaderCheck};
