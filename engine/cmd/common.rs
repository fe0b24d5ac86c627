//! What the commands share: the one error type they return ([`Failure`]: a
//! message and its exit code; `main` prints it), and loading a spec, opening
//! the store, planning and running a selection.
//!
//! Exit codes: 0 success, 1 a stage or the environment failed, 2 the spec or
//! the command line is wrong. Data goes to stdout, progress and logs to stderr.

use crate::cli::{ExecutorArgs, ExecutorKind, SelectArgs};
use crate::plan::{self, Facts, Selection};
use crate::run::{self, Executor, RunOptions, SlurmOptions};
use crate::spec;
use crate::store::Store;
use std::io::IsTerminal;
use std::path::Path;

impl From<SelectArgs> for Selection {
    fn from(a: SelectArgs) -> Self {
        Selection {
            only: a.only,
            from: a.from,
            to: a.to,
            force: a.force,
            allow_missing: false,
        }
    }
}

impl ExecutorArgs {
    pub fn executor(&self) -> Executor {
        match self.executor {
            ExecutorKind::Local => Executor::Local,
            ExecutorKind::Slurm => Executor::Slurm(SlurmOptions {
                retries: self.retries,
                poll: std::time::Duration::from_secs_f64(self.poll.max(0.05)),
                sbatch_args: self.sbatch_args.clone(),
            }),
        }
    }
}

/// An error on its way to the user, with its exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

pub fn load_spec(path: &Path) -> Result<spec::Spec, Failure> {
    spec::load(path).map_err(|e| Failure::usage(e.render()))
}

pub fn open_store(dir: &Path) -> Result<Store, Failure> {
    Store::open(dir).map_err(|e| {
        Failure::runtime(format!(
            "error: cannot open the cache at {}: {e}",
            dir.display()
        ))
    })
}

pub fn make_plan(
    spec: &spec::Spec,
    store: &Store,
    selection: &Selection,
    facts: &Facts,
) -> Result<plan::Plan, Failure> {
    plan::build(spec, store, selection, facts).map_err(|e| match e {
        plan::PlanError::Spec(diagnostics) => {
            Failure::usage(crate::diag::render_all(&diagnostics, &spec.sources))
        }
        plan::PlanError::Store(e) => Failure::runtime(format!("error: cache: {e}")),
    })
}

pub fn run_options(
    jobs: Option<usize>,
    keep_going: bool,
    no_progress: bool,
    executor: Executor,
) -> RunOptions {
    RunOptions {
        executor,
        jobs: jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        keep_going,
        progress: !no_progress && std::io::stderr().is_terminal(),
    }
}

/// Plan and run the selected stages, write the lock file, and turn stage
/// failures into one message that says what finished is kept.
pub fn run_selection(
    spec: &spec::Spec,
    store: &Store,
    selection: &Selection,
    options: &RunOptions,
) -> Result<(), Failure> {
    let facts = Facts::default();
    let plan = make_plan(spec, store, selection, &facts)?;
    eprintln!(
        "tw: {}: {} stages, {} to run",
        spec.experiment(),
        spec.nodes().len(),
        plan.to_run()
    );
    let report = run::execute(spec, store, &plan, &facts, options).map_err(|e| match e {
        run::RunError::MissingUpstream { .. } => Failure::usage(format!(
            "error: {e}\n  = help: run without --only, or add the upstream stage to the selection"
        )),
        other => Failure::runtime(format!("error: {other}")),
    })?;
    let lock = crate::lockfile::write(spec, &report)
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    eprintln!("tw: {}", report.summary_line());
    eprintln!("tw: wrote {}", lock.display());
    if report.failures.is_empty() {
        Ok(())
    } else {
        let mut message = String::new();
        for f in &report.failures {
            message.push_str(&format!(
                "error: stage `{}` ({}) failed: {}\n",
                f.node, f.kind, f.error
            ));
        }
        message.push_str(
            "  = note: results that finished are cached; the next run continues from them",
        );
        Err(Failure::runtime(message))
    }
}
