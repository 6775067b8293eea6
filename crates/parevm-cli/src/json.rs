//! Writing the commands' `--json` reports.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `value` as pretty JSON with a final newline to `path`; errors name the file.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let write = || -> Result<(), Box<dyn std::error::Error>> {
        let mut out = BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(&mut out, value)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}
