//! Running a block through the sequential path and Block-STM and checking they agree: what
//! the conformance runner, the fuzz targets and the compliance tests share.

use std::num::NonZeroUsize;

use parevm::{
    BlockInput, BlockOutput, Compliance, Config, ExecutionError, ExecutionMode, ExecutionStats,
    Executor, Storage,
};

/// `block` through the engine's sequential executor, with `compliance` if given.
pub fn sequential<S: Storage>(
    storage: &S,
    block: &BlockInput,
    compliance: Option<&Compliance>,
) -> Result<BlockOutput, ExecutionError> {
    let config =
        Config::default().with_mode(ExecutionMode::Sequential).with_compliance(compliance.cloned());
    Ok(Executor::new(config)?.execute(storage, block)?.output)
}

/// `block` through Block-STM on `threads` threads, every one racing (the workers not
/// fitted to the block, [`Config::fit_workers`]), with `compliance` if given.
pub fn parallel<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
    compliance: Option<&Compliance>,
) -> Result<(BlockOutput, ExecutionStats), ExecutionError> {
    let config = racing(threads).with_compliance(compliance.cloned());
    let execution = Executor::new(config)?.execute(storage, block)?;
    Ok((execution.output, execution.stats))
}

/// Block-STM forced on `threads` threads, every one racing.
pub fn racing(threads: NonZeroUsize) -> Config {
    Config::default()
        .with_threads(threads)
        .with_mode(ExecutionMode::Parallel)
        .with_fit_workers(false)
}

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
        Executor::new(config)?.execute(storage, block).map(|execution| execution.output)
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
