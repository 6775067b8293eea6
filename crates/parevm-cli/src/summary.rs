//! The plain-words ending of `parevm replay` on the embedded block: what was executed,
//! whether the two paths agreed and the header matched, and the speedup against the bound
//! the block allows — or, where Block-STM did not win, why.

/// What one replayed block showed, as the summary needs it.
pub struct Summary<'a> {
    /// The block's name.
    pub block: &'a str,
    /// What its transactions do, in a few words.
    pub description: &'a str,
    pub txs: usize,
    /// Transactions the compliance hook left out, if a hook was on.
    pub excluded: Option<usize>,
    pub gas_used: u64,
    pub threads: usize,
    /// Timed runs of each path.
    pub runs: u32,
    /// Whether every parallel run equalled the sequential result.
    pub agreed: bool,
    /// Whether the sequential result matched the header.
    pub verified: bool,
    /// Whether the engine ran Block-STM (`auto` may choose sequential).
    pub parallel_path: bool,
    pub sequential_ms: f64,
    pub parallel_ms: f64,
    pub speedup: f64,
    pub quartiles: (f64, f64),
    /// The list-scheduling bound of the block's dependency graph at `threads`.
    pub ideal: f64,
}

/// "1 thread", "2 threads".
pub fn threads(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

impl Summary<'_> {
    /// Three or four sentences, one per line.
    pub fn render(&self) -> String {
        let mut lines = Vec::new();
        let hook = match self.excluded {
            Some(excluded) => format!(
                "; the compliance hook, enforced inside the engine, left out {excluded} of them \
                 (senders without a valid credential when their transaction ran)"
            ),
            None => String::new(),
        };
        lines.push(format!(
            "Executed {}: {} transactions ({}), {:.1} Mgas{hook}.",
            self.block,
            self.txs,
            self.description,
            self.gas_used as f64 / 1e6
        ));
        let agreement = if self.agreed {
            format!(
                "Sequential revm and the engine on {} produced the same result bit for \
                 bit in each of the {} runs (receipts, logs, gas and every state change)",
                threads(self.threads),
                self.runs
            )
        } else {
            "The engine's result DIFFERED from sequential revm's (a bug: see the error above)"
                .to_string()
        };
        let header = if self.verified {
            "the result matches the header recorded when the block was generated (gas used, \
             logs bloom, receipts root)"
        } else {
            "the result does NOT match the block's header (see the error above)"
        };
        lines.push(format!("{agreement}, and {header}."));
        lines.push(format!(
            "{} took {:.1} ms against {:.1} ms sequentially (medians): {:.2}x, with the middle \
             half of the per-round ratios between {:.2}x and {:.2}x; the block's dependencies \
             allow at most {:.2}x on {}.",
            if self.parallel_path { "Block-STM" } else { "The engine" },
            self.parallel_ms,
            self.sequential_ms,
            self.speedup,
            self.quartiles.0,
            self.quartiles.1,
            self.ideal,
            threads(self.threads)
        ));
        if let Some(why) = self.why_no_win() {
            lines.push(why);
        }
        lines.join("\n") + "\n"
    }

    /// Why the engine did not beat sequential, if it did not.
    fn why_no_win(&self) -> Option<String> {
        if self.speedup > 1.0 {
            return None;
        }
        Some(if self.threads == 1 {
            "It did not win because there is one thread: with no second core Block-STM can \
             only add its bookkeeping (pass --threads, or run on a machine with more cores)."
                .into()
        } else if !self.parallel_path {
            "It did not win because `auto` ran the block sequentially on this machine, so both \
             sides ran the same path (--mode parallel forces Block-STM)."
                .into()
        } else if self.ideal < 1.1 {
            "It did not win because the block's transactions depend on each other: there is \
             almost no parallelism to find."
                .into()
        } else {
            format!(
                "It did not win here: Block-STM's per-transaction bookkeeping (versioned reads, \
                 validation, the in-order commit) cost more than the {:.2}x the block allows \
                 saved; other work on the cores looks the same, so re-run, and see where the \
                 time went with --phases.",
                self.ideal
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary<'static> {
        Summary {
            block: "embedded:gated-swaps",
            description: "swaps",
            txs: 2000,
            excluded: Some(356),
            gas_used: 125_079_574,
            threads: 2,
            runs: 10,
            agreed: true,
            verified: true,
            parallel_path: true,
            sequential_ms: 48.9,
            parallel_ms: 38.5,
            speedup: 1.27,
            quartiles: (1.1, 1.34),
            ideal: 2.0,
        }
    }

    #[test]
    fn a_win_states_the_facts_and_the_bound() {
        let text = summary().render();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("2000 transactions (swaps), 125.1 Mgas"), "{text}");
        assert!(text.contains("left out 356"), "{text}");
        assert!(text.contains("bit for bit in each of the 10 runs"), "{text}");
        assert!(text.contains("matches the header recorded"), "{text}");
        assert!(text.contains("1.27x") && text.contains("at most 2.00x on 2 threads"), "{text}");
    }

    #[test]
    fn a_loss_says_why() {
        let cases = [
            (Summary { threads: 1, speedup: 0.8, ..summary() }, "one thread"),
            (Summary { parallel_path: false, speedup: 0.99, ..summary() }, "`auto` ran"),
            (Summary { ideal: 1.02, speedup: 0.9, ..summary() }, "depend on each other"),
            (Summary { speedup: 0.95, ..summary() }, "bookkeeping"),
        ];
        for (s, reason) in cases {
            let text = s.render();
            assert_eq!(text.lines().count(), 4, "{text}");
            assert!(text.lines().last().unwrap().contains(reason), "{text}");
        }
    }

    #[test]
    fn a_divergence_or_a_header_mismatch_is_not_hidden() {
        let text = Summary { agreed: false, verified: false, ..summary() }.render();
        assert!(text.contains("DIFFERED") && text.contains("does NOT match"), "{text}");
    }
}
