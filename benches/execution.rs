//! Sequential against parallel execution, with criterion:
//!
//! - every synthetic workload (about 100 million gas each; `PAREVM_BENCH_GAS` overrides);
//! - every snapshot under `PAREVM_BENCH_BLOCKS` (default `../shared/testdata/mainnet` when it
//!   exists, relative to the workspace root).
//!
//! `cargo bench -p parevm-benches`; filter with criterion's usual arguments, e.g.
//! `cargo bench -p parevm-benches -- swaps`. Parallel runs use all cores (`PAREVM_THREADS`
//! overrides) with Block-STM forced on.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parevm::{BlockInput, Compliance, Config, ExecutionMode, Executor, InMemoryStorage};
use parevm_fixtures::workload::{generate, Size, Workload, WorkloadKind};
use parevm_fixtures::{discover_snapshots, load_snapshot};

fn threads() -> NonZeroUsize {
    std::env::var("PAREVM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
}

fn bench_block(
    c: &mut Criterion,
    group: &str,
    name: &str,
    storage: &InMemoryStorage,
    block: &BlockInput,
    compliance: Option<Compliance>,
) {
    let sequential = Executor::new(
        Config::default().with_mode(ExecutionMode::Sequential).with_compliance(compliance.clone()),
    )
    .expect("no threads to start");
    let reference =
        sequential.execute(storage, block).unwrap_or_else(|e| panic!("{name}: {e}")).output;
    let executor = Executor::new(
        Config::default()
            .with_threads(threads())
            .with_mode(ExecutionMode::Parallel)
            .with_compliance(compliance.clone()),
    )
    .expect("worker threads start");
    let parallel = executor.execute(storage, block).expect("parallel execution");
    assert!(parallel.output == reference, "{name}: parallel differs from sequential");

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(reference.gas_used));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("sequential", name), |b| {
        b.iter(|| sequential.execute(storage, block).unwrap())
    });
    g.bench_function(BenchmarkId::new("parallel", name), |b| {
        b.iter(|| executor.execute(storage, block).unwrap())
    });
    g.finish();
}

fn synthetic(c: &mut Criterion) {
    let gas =
        std::env::var("PAREVM_BENCH_GAS").ok().and_then(|g| g.parse().ok()).unwrap_or(100_000_000);
    for kind in WorkloadKind::ALL {
        let workload = Workload { size: Size::Gas(gas), ..Workload::new(kind, 0) };
        let generated = generate(&workload);
        let compliance = generated.compliance.map(|c| c.compliance());
        bench_block(c, "synthetic", kind.name(), &generated.storage, &generated.block, compliance);
    }
}

fn snapshots_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PAREVM_BENCH_BLOCKS") {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/mainnet");
    default.is_dir().then_some(default)
}

fn snapshots(c: &mut Criterion) {
    let Some(dir) = snapshots_dir() else {
        eprintln!("no snapshots: set PAREVM_BENCH_BLOCKS or place ../shared beside the workspace");
        return;
    };
    let dirs = discover_snapshots(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for dir in dirs {
        let snapshot = load_snapshot(&dir).unwrap_or_else(|e| panic!("{e}"));
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        bench_block(c, "snapshots", &name, &snapshot.storage, &snapshot.block, None);
    }
}

criterion_group!(benches, synthetic, snapshots);
criterion_main!(benches);
