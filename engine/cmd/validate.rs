//! `tw validate`: check specs and report every problem at once; with
//! `--allow-missing`, files the specs read may be missing.

use super::common::Failure;
use crate::{plan, spec};
use std::io::Write;
use std::path::PathBuf;
pub fn run(specs: &[PathBuf], allow_missing: bool, stdout: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    if specs.is_empty() {
        return Err(Failure::usage("error: name at least one spec file"));
    }
    let mut failed = Vec::new();
    for path in specs {
        match spec::load(path) {
            Ok(s) => {
                let missing = plan::missing_files(&s);
                if missing.is_empty() || allow_missing {
                    let absent = match missing.len() {
                        0 => String::new(),
                        1 => "; 1 file it reads is missing".to_string(),
                        n => format!("; {n} files it reads are missing"),
                    };
                    writeln!(
                        stdout,
                        "{}: ok ({} stages{absent})",
                        path.display(),
                        s.nodes().len()
                    )
                    .map_err(io)?;
                } else {
                    failed.push(crate::diag::render_all(&missing, &s.sources));
                }
            }
            Err(e) => failed.push(e.render()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::usage(failed.join("\n")))
    }
}
