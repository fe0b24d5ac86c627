//! `tw stages`: list stage kinds, or print one kind's documentation.

use super::common::Failure;
use crate::cli::StagesCommand;
use crate::spec;
use std::io::Write;
pub fn run(command: Option<StagesCommand>, stdout: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let registry = spec::registry();
    match command {
        None | Some(StagesCommand::List) => {
            for stage in registry.kinds() {
                let doc = stage.doc();
                let summary = doc.lines().next().unwrap_or_default();
                writeln!(stdout, "{summary}").map_err(io)?;
            }
            Ok(())
        }
        Some(StagesCommand::Describe { kind }) => match registry.get(&kind) {
            Some(stage) => {
                let mut doc = stage.doc();
                if let Some(slot) = stage.row_mapped_slot() {
                    doc.push_str(&format!(
                        "\n# Sharding\nMaps over input `{slot}` row by row: `shard: {{ rows: N }}` on the stage runs it in chunks of N rows, each cached on its own (README, \"Scaling out\").\n"
                    ));
                }
                stdout.write_all(doc.as_bytes()).map_err(io)
            }
            None => Err(Failure::usage(format!(
                "error: unknown stage kind `{kind}`{}",
                crate::diag::did_you_mean(&kind, registry.names())
                    .map(|h| format!("\n  = help: {h}"))
                    .unwrap_or_default()
            ))),
        },
    }
}
