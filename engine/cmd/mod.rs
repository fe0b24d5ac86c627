//! The commands: one file each, and the dispatch from the parsed command line
//! ([`crate::cli`]) to them. Every command returns a
//! [`Failure`](common::Failure) on error, which `main` prints with its exit code.
//!
//! May import: `cli`, `spec`, `plan`, `run`, `store`, `diag`, `lockfile`.

pub mod cache;
pub mod common;
pub mod compute;
pub mod exec_task;
pub mod gc;
pub mod plan;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod score;
pub mod show;
pub mod stages;
pub mod trace;
pub mod validate;

use crate::cli::{CacheCommand, Cli, Command, SandboxCommand, SandboxPolicy};
pub use common::Failure;
use std::io::Write;
use tw_stages::python::sandbox::{Policy, set_policy};

/// Run a parsed command line; stdout gets data, stderr gets logs.
pub fn execute(cli: Cli, stdout: &mut dyn Write) -> Result<(), Failure> {
    let cache_dir = cli.cache_dir.as_path();
    if let Some(policy) = cli.sandbox {
        set_policy(match policy {
            SandboxPolicy::Auto => Policy::Auto,
            SandboxPolicy::Require => Policy::Require,
            SandboxPolicy::None => Policy::None,
        });
    }
    match cli.command {
        Command::Validate {
            specs,
            allow_missing,
        } => validate::run(&specs, allow_missing, stdout),
        Command::Plan {
            spec,
            select,
            json,
            allow_missing,
        } => plan::run(cache_dir, &spec, select, json, allow_missing, stdout),
        Command::Run {
            spec,
            select,
            jobs,
            keep_going,
            no_progress,
            executor,
        } => run::run(
            cache_dir,
            &spec,
            select,
            jobs,
            keep_going,
            no_progress,
            executor,
        ),
        Command::Report {
            spec,
            stage,
            out,
            no_run,
            jobs,
            no_progress,
            cpu_watts,
            gpu_watts,
            executor,
        } => report::run(
            cache_dir,
            &spec,
            &stage,
            &out,
            no_run,
            jobs,
            no_progress,
            compute::Power {
                cpu_watts,
                gpu_watts,
            },
            executor,
            stdout,
        ),
        Command::Show { spec, target, head } => {
            show::run_show(cache_dir, &spec, &target, head, stdout)
        }
        Command::Export {
            spec,
            target,
            format,
            output,
        } => show::run_export(cache_dir, &spec, &target, format, output.as_deref(), stdout),
        Command::Gc { specs, dry_run } => gc::run(cache_dir, &specs, dry_run, stdout),
        Command::Cache {
            command: CacheCommand::Verify { delete_corrupt },
        } => cache::verify(cache_dir, delete_corrupt, stdout),
        Command::Sandbox {
            command: SandboxCommand::Check { json },
        } => sandbox::check(json, stdout),
        Command::ExecTask { task } => exec_task::run(&task, stdout),
        Command::Score(args) => score::run(args, stdout),
        Command::Trace(args) => trace::run(args, stdout),
        Command::Stages { command } => stages::run(command, stdout),
    }
}
