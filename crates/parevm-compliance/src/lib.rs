//! The credential-registry compliance hook for parevm.
//!
//! A `CredentialRegistry` contract (source in `testdata/contracts/src`) holds trusted
//! issuers, the credentials they issued (per subject and [`Claim`]) and pool policies (the
//! claims a gated pool requires). [`RegistryHook`] implements the engine's
//! [`parevm::ComplianceHook`] by reading that contract's storage through the engine's
//! state view, so issuance, revocation, issuer and policy changes made earlier in a block
//! bind later transactions identically in sequential and parallel execution.
//!
//! [`layout`] computes the registry's storage slots and encodes its records, so a pre-state
//! can hold credentials without running any transaction; [`ComplianceFile`] is the
//! `compliance.json` configuration `parevm replay` reads. The storage layout is documented
//! in `docs/compliance.md`.

#![warn(missing_docs)]

mod claim;
mod config;
mod hook;
pub mod layout;

pub use claim::Claim;
pub use config::{ComplianceFile, ComplianceFileError, ModeName, COMPLIANCE_FILE};
pub use hook::RegistryHook;

/// The registry's runtime bytecode, as compiled from `CredentialRegistry.sol` (solc 0.8.28).
pub fn registry_runtime() -> alloy_primitives::Bytes {
    let artifact: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/contracts/build/CredentialRegistry.json"
    ))
    .expect("the committed artifact is valid JSON");
    artifact["deployedBytecode"]
        .as_str()
        .and_then(|code| code.parse().ok())
        .expect("the committed artifact has runtime bytecode")
}
