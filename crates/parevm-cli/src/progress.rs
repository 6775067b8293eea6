//! Progress of long commands on stderr: a bar with the rate and the time left when stderr
//! is a terminal, nothing otherwise (indicatif draws only to terminals), so that logs and
//! pipes get the results alone.

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// A progress bar over `len` items called `unit` ("blocks", "files", "workloads").
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let template =
        format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{rate}}/s, {{eta}} left  {{wide_msg}}");
    let style = ProgressStyle::with_template(&template)
        .expect("the template is valid")
        .progress_chars("█▌ ")
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1}", state.per_sec());
        });
    ProgressBar::new(len).with_style(style)
}
