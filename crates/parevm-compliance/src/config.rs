//! `compliance.json`: which registry gates pools, and what a rejection does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::Address;
use parevm::{Compliance, ComplianceMode};
use serde::Deserialize;

use crate::RegistryHook;

/// The file name a snapshot folder's compliance configuration has.
pub const COMPLIANCE_FILE: &str = "compliance.json";

/// What a rejection does, as written in `compliance.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    /// [`ComplianceMode::Exclude`].
    Exclude,
    /// [`ComplianceMode::Revert`].
    Revert,
    /// [`ComplianceMode::FailBlock`].
    FailBlock,
}

/// The content of `compliance.json`:
/// `{ "registry": "0x…", "mode": "exclude" | "revert" | "fail-block" }`, with
/// `"exclusion_budget": <gas>` optionally beside `"mode": "exclude"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceFile {
    /// Address of the `CredentialRegistry`.
    pub registry: Address,
    /// What a rejection does.
    pub mode: ModeName,
    /// With `exclude`: the gas excluded transactions may spend in one block
    /// ([`Compliance::exclusion_budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_budget: Option<u64>,
}

/// Why `compliance.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceFileError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: invalid at `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in the document the error is.
        field: String,
        /// What is wrong there.
        message: String,
    },
}

impl ComplianceFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ComplianceFileError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ComplianceFileError::Io { path: path.to_owned(), source })?;
        Self::parse(path, &bytes)
    }

    /// Reads `dir/compliance.json` if the folder has one.
    pub fn load_from_dir(dir: &Path) -> Result<Option<Self>, ComplianceFileError> {
        let path = dir.join(COMPLIANCE_FILE);
        if path.is_file() {
            Self::load(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Parses `bytes`, naming `path` in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ComplianceFileError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let file: Self =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ComplianceFileError::Parse {
                path: path.to_owned(),
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        if file.exclusion_budget.is_some() && file.mode != ModeName::Exclude {
            return Err(ComplianceFileError::Parse {
                path: path.to_owned(),
                field: "exclusion_budget".into(),
                message: "an exclusion budget applies to mode `exclude` only".into(),
            });
        }
        Ok(file)
    }

    /// The engine configuration: a [`RegistryHook`] with the file's mode and budget.
    pub fn compliance(&self) -> Compliance {
        let mode = match self.mode {
            ModeName::Exclude => ComplianceMode::Exclude,
            ModeName::Revert => ComplianceMode::Revert,
            ModeName::FailBlock => ComplianceMode::FailBlock,
        };
        let compliance = Compliance::new(Arc::new(RegistryHook::new(self.registry)), mode);
        match self.exclusion_budget {
            Some(gas) => compliance.with_exclusion_budget(gas),
            None => compliance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_modes_and_names_bad_fields() {
        let path = Path::new("compliance.json");
        let ok = ComplianceFile::parse(
            path,
            br#"{"registry": "0x00000000000000000000000000000000000000aa", "mode": "fail-block"}"#,
        )
        .unwrap();
        assert_eq!(ok.mode, ModeName::FailBlock);
        assert_eq!(ok.compliance().mode, ComplianceMode::FailBlock);
        let bad = ComplianceFile::parse(path, br#"{"registry": "0x12", "mode": "exclude"}"#);
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("compliance.json: invalid at `registry`"), "{message}");
        let bad = ComplianceFile::parse(
            path,
            br#"{"registry": "0x00000000000000000000000000000000000000aa", "mode": "drop"}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("`mode`"));
        let unknown = ComplianceFile::parse(
            path,
            br#"{"registry": "0x00000000000000000000000000000000000000aa", "mode": "exclude", "x": 1}"#,
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
        let budget = ComplianceFile::parse(
            path,
            br#"{"registry": "0x00000000000000000000000000000000000000aa", "mode": "exclude", "exclusion_budget": 5000000}"#,
        )
        .unwrap();
        assert_eq!(budget.compliance().exclusion_budget, Some(5_000_000));
        assert_eq!(ok.compliance().exclusion_budget, None);
        let misplaced = ComplianceFile::parse(
            path,
            br#"{"registry": "0x00000000000000000000000000000000000000aa", "mode": "revert", "exclusion_budget": 1}"#,
        );
        let message = misplaced.unwrap_err().to_string();
        assert!(message.contains("`exclusion_budget`: an exclusion budget applies"), "{message}");
    }
}
