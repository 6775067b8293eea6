//! What `replay` and `bench` measure: paired sequential/parallel timings with their spread,
//! and the parallel executor's per-phase breakdown (`--phases`).

use std::time::{Duration, Instant};

use parevm::{BlockInput, ExecutionError, Executor, PhaseTimes, Storage, WorkerPhases};
use serde::Serialize;

use crate::table::Table;

/// Timings of alternating sequential and parallel runs of one block, in pairs.
#[derive(Default)]
pub struct Paired {
    sequential: Vec<Duration>,
    parallel: Vec<Duration>,
}

/// The summary of [`Paired`] timings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    /// Median of the sequential runs, in µs.
    pub sequential_us: f64,
    /// Median of the parallel runs, in µs.
    pub parallel_us: f64,
    /// `sequential_us / parallel_us`.
    pub speedup: f64,
    /// First and third quartiles of the per-pair ratios (sequential / parallel of the same
    /// round): the spread that noise gives the speedup.
    pub ratio_q1: f64,
    pub ratio_q3: f64,
}

impl Paired {
    /// Records one sequential run.
    pub fn sequential(&mut self, time: Duration) {
        self.sequential.push(time);
    }

    /// Records one parallel run (paired with the sequential run of the same round).
    pub fn parallel(&mut self, time: Duration) {
        self.parallel.push(time);
    }

    /// Median of the sequential runs (there must be at least one).
    pub fn sequential_median(&self) -> Duration {
        median(&self.sequential)
    }

    /// Medians and the spread of the paired ratios; `None` without parallel runs.
    pub fn spread(&self) -> Option<Spread> {
        if self.parallel.is_empty() {
            return None;
        }
        let (seq, par) = (median(&self.sequential), median(&self.parallel));
        let mut ratios: Vec<f64> = self
            .sequential
            .iter()
            .zip(&self.parallel)
            .map(|(s, p)| s.as_secs_f64() / p.as_secs_f64().max(f64::MIN_POSITIVE))
            .collect();
        ratios.sort_by(f64::total_cmp);
        Some(Spread {
            sequential_us: seq.as_secs_f64() * 1e6,
            parallel_us: par.as_secs_f64() * 1e6,
            speedup: seq.as_secs_f64() / par.as_secs_f64().max(f64::MIN_POSITIVE),
            ratio_q1: quantile(&ratios, 0.25),
            ratio_q3: quantile(&ratios, 0.75),
        })
    }
}

/// The median of `samples` (the upper one of an even count).
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// The `q` quantile of sorted `values`, interpolating linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// Times one closure.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// One worker's phases in µs per transaction of the block, as written to `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerBreakdown {
    pub evm: f64,
    pub reads: f64,
    pub record: f64,
    pub validate: f64,
    pub commit: f64,
    pub schedule: f64,
    pub idle: f64,
    pub state: f64,
    pub total: f64,
}

impl WorkerBreakdown {
    /// `phases` (summed over runs) in µs per run and transaction, `per` being runs × txs.
    fn new(phases: &WorkerPhases, per: f64) -> Self {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / per;
        Self {
            evm: us(phases.evm),
            reads: us(phases.reads),
            record: us(phases.record),
            validate: us(phases.validate),
            commit: us(phases.commit),
            schedule: us(phases.schedule),
            idle: us(phases.idle),
            state: us(phases.state),
            total: us(phases.total()),
        }
    }
}

/// The parallel executor's phases for one block, averaged over runs.
#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub threads: usize,
    /// Setup of the block, merging the workers' shares of its state changes, and the rest
    /// of its finish, µs per transaction.
    pub setup: f64,
    pub merge: f64,
    pub finish: f64,
    /// One per worker, the calling thread first.
    pub workers: Vec<WorkerBreakdown>,
}

/// Runs `block` `runs` times on `executor` with phase timers on (separately from the timed
/// runs, whose times the timers would inflate) and averages the phases; `None` if the
/// executor ran it sequentially.
pub fn breakdown<S: Storage>(
    executor: &mut Executor,
    storage: &S,
    block: &BlockInput,
    runs: u32,
) -> Result<Option<Breakdown>, ExecutionError> {
    executor.set_phase_timers(true);
    let executions: Result<Vec<Option<PhaseTimes>>, _> =
        (0..runs.max(1)).map(|_| executor.execute(storage, block).map(|e| e.phases)).collect();
    executor.set_phase_timers(false);
    let Some(all) = executions?.into_iter().collect::<Option<Vec<PhaseTimes>>>() else {
        return Ok(None);
    };
    let per = (all.len() * block.transactions.len().max(1)) as f64;
    let mut workers: Vec<WorkerPhases> = Vec::new();
    for phases in &all {
        workers.resize(workers.len().max(phases.workers.len()), WorkerPhases::default());
        for (sum, worker) in workers.iter_mut().zip(&phases.workers) {
            *sum += worker;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / per;
    Ok(Some(Breakdown {
        threads: executor.config().threads.get(),
        setup: us(all.iter().map(|p| p.setup).sum()),
        merge: us(all.iter().map(|p| p.merge).sum()),
        finish: us(all.iter().map(|p| p.finish).sum()),
        workers: workers.iter().map(|w| WorkerBreakdown::new(w, per)).collect(),
    }))
}

/// Renders the breakdowns of named blocks, one row per worker, in µs per transaction.
pub fn render_breakdowns<'a>(rows: impl Iterator<Item = (&'a str, &'a Breakdown)>) -> String {
    let mut table = Table::new(&[
        "block",
        "worker",
        "evm",
        "reads",
        "record",
        "validate",
        "commit",
        "schedule",
        "idle",
        "state",
        "total",
        "merge",
        "setup+finish",
    ]);
    let f = |v: f64| format!("{v:.2}");
    for (name, b) in rows {
        for (i, w) in b.workers.iter().enumerate() {
            table.row(vec![
                if i == 0 { name.to_string() } else { String::new() },
                format!("{}/{}", i + 1, b.threads),
                f(w.evm),
                f(w.reads),
                f(w.record),
                f(w.validate),
                f(w.commit),
                f(w.schedule),
                f(w.idle),
                f(w.state),
                f(w.total),
                if i == 0 { f(b.merge) } else { String::new() },
                if i == 0 { f(b.setup + b.finish) } else { String::new() },
            ]);
        }
    }
    let mut out = String::from(
        "Block-STM phases, µs per transaction of the block, per worker (mean of the runs; \
         timers on, separate from the timed runs):\n",
    );
    out.push_str(&table.render());
    out
}

/// Geometric mean of positive values.
pub fn geomean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (n > 0).then(|| (sum / n as f64).exp())
}

/// The engine's sequential executor (the yardstick), with `compliance` if given.
pub fn sequential_executor(
    compliance: Option<&parevm::Compliance>,
) -> Result<parevm::Executor, parevm::ExecutionError> {
    let config = parevm::Config::default()
        .with_mode(parevm::ExecutionMode::Sequential)
        .with_compliance(compliance.cloned());
    parevm::Executor::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_paired_ratios() {
        let mut paired = Paired::default();
        for (s, p) in [(10, 5), (10, 10), (12, 6), (9, 3), (10, 4)] {
            paired.sequential(Duration::from_millis(s));
            paired.parallel(Duration::from_millis(p));
        }
        let spread = paired.spread().unwrap();
        // Ratios 2, 1, 2, 3, 2.5 → sorted 1, 2, 2, 2.5, 3.
        assert_eq!(spread.ratio_q1, 2.0);
        assert_eq!(spread.ratio_q3, 2.5);
        assert_eq!(spread.sequential_us, 10_000.0);
        assert_eq!(spread.parallel_us, 5_000.0);
        assert_eq!(spread.speedup, 2.0);
        assert!(Paired::default().spread().is_none());
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
        assert_eq!(quantile(&[4.0], 0.25), 4.0);
    }
}
