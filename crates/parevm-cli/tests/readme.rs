//! Every command the README shows, so that none can rot: each `parevm …` line is run on
//! small local inputs (the committed snapshots stand in for `../shared`, sizes are cut to
//! seconds), and each other command (cargo, fuzzing, the shared suites) must be one that
//! `.ci/run` runs. A README command this file does not know fails the test.

mod mock_node;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The command lines of the README's `sh` blocks, without their comments.
fn readme_commands() -> Vec<String> {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && !command.is_empty() => {
                let command = command.split(" #").next().unwrap();
                commands.push(command.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            _ => {}
        }
    }
    commands
}

/// The commands `.ci/run` covers instead of this test, each with the text of `.ci/run` that
/// runs it (every piece must be there).
const IN_CI: &[(&str, &[&str])] = &[
    ("cargo test --release --workspace", &["cargo test --release --workspace"]),
    ("cargo bench -p parevm-benches", &["cargo bench -p parevm-benches"]),
    (
        "cargo run --release -p parevm --example alloy_block",
        &["cargo run --release -p parevm --example alloy_block"],
    ),
    (
        "cargo build --release -p parevm-cli --features perturb",
        &["cargo build --release -p parevm-cli --features perturb"],
    ),
    (
        "deploy/local/replay-sharded.sh target/release/parevm ../shared/testdata/mainnet 4 target/shards",
        &["deploy/local/replay-sharded.sh \"$bin\" \"$shared/mainnet\" 4"],
    ),
    (
        "parevm conformance ../shared/testdata/ethereum-tests",
        &["\"$bin\" conformance \"$shared/ethereum-tests\""],
    ),
    (
        "cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --release differential -- -max_total_time=600",
        &["cd fuzz", "for target in differential", "RUSTC_BOOTSTRAP=1 timeout 900 cargo fuzz run -s none --release \"$target\""],
    ),
    (
        "cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --release snapshot_parse",
        &["for target in differential compliance snapshot_parse"],
    ),
    (
        "cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --release compliance",
        &["for target in differential compliance snapshot_parse"],
    ),
];

/// Local stand-ins for the README's placeholders and shared paths, and a mock node.
struct Inputs {
    scratch: PathBuf,
    /// The mock node's HTTP and WebSocket URLs.
    node: String,
    ws_node: String,
}

impl Inputs {
    fn new() -> Self {
        let scratch = std::env::temp_dir().join(format!("parevm-readme-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        // A folder of snapshots standing in for ../shared/testdata/mainnet.
        for (name, snapshot) in [("1", "synthetic-mixed"), ("2", "gated-swaps")] {
            let from = root().join("testdata/snapshots").join(snapshot);
            let to = scratch.join("blocks").join(name);
            fs::create_dir_all(&to).unwrap();
            for file in fs::read_dir(&from).unwrap() {
                let file = file.unwrap();
                fs::copy(file.path(), to.join(file.file_name())).unwrap();
            }
        }
        // The node of the fetch examples: a loopback mock serving the test block.
        let mock = mock_node::Mock::serving(&[root().join("testdata/snapshots/synthetic-mixed")]);
        let (node, ws_node) = (mock.start(), mock.start_ws());
        Self { scratch, node, ws_node }
    }

    /// Writes `shard-I.jsonl` for every shard of `count` over the stand-in blocks.
    fn replay_shards(&self, count: usize) {
        for i in 0..count {
            let out = Command::new(env!("CARGO_BIN_EXE_parevm"))
                .arg("replay")
                .arg(self.scratch.join("blocks"))
                .arg("--shard")
                .arg(format!("{i}/{count}"))
                .arg("--jsonl")
                .arg(self.scratch.join(format!("shard-{i}.jsonl")))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// The arguments of README command `command` (after `parevm`), on local inputs.
    fn args(&self, command: &str, run: usize) -> Vec<String> {
        let sample = root().join("testdata/snapshots/synthetic-mixed");
        let compliance = root().join("testdata/snapshots/gated-swaps/compliance.json");
        let out = self.scratch.join(format!("out-{run}"));
        let mut args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|word| match word {
                "../shared/testdata/mainnet" => self.scratch.join("blocks").display().to_string(),
                "../shared/testdata/mainnet/16257471" | "PATH" => sample.display().to_string(),
                "compliance.json" => compliance.display().to_string(),
                // The fetch examples: the mock node, its block, a scratch folder.
                "http://localhost:8545" => self.node.clone(),
                "ws://localhost:8546" => self.ws_node.clone(),
                "19933597" | "19933600..19933610" => "20000000".into(),
                "blocks" if command.starts_with("parevm fetch") => {
                    self.scratch.join(format!("fetched-{run}")).display().to_string()
                }
                "OUT" | "results.json" | "out.json" | "out.svg" | "blocks.svg" => {
                    format!("{}-{word}", out.display())
                }
                // Shard files are shared between the replay and the report commands.
                shard if shard.starts_with("shard-") && shard.ends_with(".jsonl") => {
                    self.scratch.join(shard).display().to_string()
                }
                // Sizes cut to seconds.
                "1000000000" => "2000000".into(),
                "3000" => "300".into(),
                "50" if command.contains("--stress") => "2".into(),
                word => word.into(),
            })
            .collect();
        let sized = ["--gas", "--txs", "--blocks"].iter().any(|f| command.contains(f));
        if args[0] == "bench" && !sized {
            args.extend(["--gas", "2000000", "--repeat", "1"].map(String::from));
        }
        args
    }
}

#[test]
fn every_readme_command_is_known() {
    let commands = readme_commands();
    assert!(commands.len() > 20, "{commands:?}");
    for command in &commands {
        let known = command.starts_with("parevm ")
            || command == "cargo run --release -p parevm-cli -- replay"
            || IN_CI.iter().any(|(c, _)| c == command);
        assert!(known, "README command `{command}` is neither run here nor listed in IN_CI");
    }
    for (command, _) in IN_CI {
        assert!(commands.iter().any(|c| c == command), "IN_CI lists `{command}`, the README not");
    }
}

#[test]
fn the_commands_left_to_ci_are_in_ci() {
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    for (command, pieces) in IN_CI {
        for piece in *pieces {
            assert!(ci.contains(piece), "`{command}`: .ci/run lacks `{piece}`");
        }
    }
}

#[test]
fn every_parevm_command_of_the_readme_runs() {
    let inputs = Inputs::new();
    let mut ran = 0;
    for (run, command) in readme_commands().iter().enumerate() {
        let args = if command == "cargo run --release -p parevm-cli -- replay" {
            vec!["replay".to_string()]
        } else if command.starts_with("parevm ") && !IN_CI.iter().any(|(c, _)| c == command) {
            inputs.args(command, run)
        } else {
            continue;
        };
        if args[0] == "report" {
            // The README shows one shard's replay; the report needs all four.
            inputs.replay_shards(4);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_parevm")).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "`{command}` as `parevm {}` failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert_eq!(ran, readme_commands().len() - IN_CI.len(), "every command not left to CI ran");
    let chart = fs::read_to_string(inputs.scratch.join(format!(
        "out-{}-out.svg",
        readme_commands().iter().position(|c| c.contains("--plot out.svg")).unwrap()
    )))
    .unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    let _ = fs::remove_dir_all(&inputs.scratch);
}
