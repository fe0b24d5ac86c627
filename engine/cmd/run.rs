//! `tw run`: run what is not cached, then write the lock file.

use super::common::{Failure, load_spec, open_store, run_options, run_selection};
use crate::cli::{ExecutorArgs, SelectArgs};
use std::path::Path;
pub fn run(
    cache_dir: &Path,
    spec: &Path,
    select: SelectArgs,
    jobs: Option<usize>,
    keep_going: bool,
    no_progress: bool,
    executor: ExecutorArgs,
) -> Result<(), Failure> {
    let spec = load_spec(spec)?;
    let store = open_store(cache_dir)?;
    let options = run_options(jobs, keep_going, no_progress, executor.executor());
    run_selection(&spec, &store, &select.into(), &options)
}
