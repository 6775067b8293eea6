//! Running a block through the sequential path and Block-STM and checking they agree: what
//! the conformance runner, the fuzz targets and the compliance tests share.

use std::num::NonZeroUsize;

use parevm::{
    execute_block, BlockInput, BlockOutput, Compliance, Config, ExecutionError, ExecutionMode,
    Storage,
};

/// Runs `block` sequentially and with Block-STM on `threads` threads. Returns the sequential
/// result if both agree exactly (equal outputs, or equal errors), else describes how they
/// differ.
pub fn both_paths<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
) -> Result<Result<BlockOutput, ExecutionError>, String> {
    both_paths_with(storage, block, threads, None)
}

/// [`both_paths`] with a compliance hook.
pub fn both_paths_with<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
    compliance: Option<&Compliance>,
) -> Result<Result<BlockOutput, ExecutionError>, String> {
    let run = |mode| {
        let config = Config::default()
            .with_threads(threads)
            .with_mode(mode)
            .with_compliance(compliance.cloned());
        execute_block(storage, block, &config).map(|execution| execution.output)
    };
    let sequential = run(ExecutionMode::Sequential);
    let parallel = run(ExecutionMode::Parallel);
    match (&sequential, &parallel) {
        (Ok(s), Ok(p)) if s == p => {}
        (Err(s), Err(p)) if format!("{s:?}") == format!("{p:?}") => {}
        (Ok(s), Ok(p)) => {
            let difference = s.first_difference(p).unwrap_or_default();
            return Err(format!("parallel differs from sequential at {difference}"));
        }
        _ => {
            return Err(format!(
                "sequential {} but parallel {}",
                summary(&sequential),
                summary(&parallel)
            ))
        }
    }
    Ok(sequential)
}

fn summary(result: &Result<BlockOutput, ExecutionError>) -> String {
    match result {
        Ok(output) => format!("ok ({} gas)", output.gas_used),
        Err(e) => format!("failed ({e})"),
    }
}
