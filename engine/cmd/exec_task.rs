//! `tw exec-task` (hidden): run the unit a Slurm array task was given.

use super::common::Failure;
use crate::spec;
use std::io::Write;
use std::path::Path;
pub fn run(task: &Path, stdout: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let done = crate::run::slurm::exec_task(task, |path| spec::load(path).map_err(|e| e.render()))
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    writeln!(
        stdout,
        "tw exec-task: {} in {:.2}s",
        if done.cached { "found cached" } else { "ran" },
        done.seconds
    )
    .map_err(io)
}
