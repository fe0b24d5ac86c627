//! Command-line interface: argument parsing, the commands, and the single
//! place where errors become text and exit codes.
//!
//! Exit codes: 0 success, 1 a stage or the environment failed, 2 the spec or
//! the command line is wrong. Data goes to stdout, progress and logs to stderr.

use crate::executor::{Executor, SlurmOptions};
use crate::inspect::{self, ExportFormat};
use crate::plan::{self, Facts, Selection};
use crate::run::{self, RunOptions};
use crate::spec;
use crate::store::Store;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "tw",
    version,
    about = "Declarative, content-hashed pipelines for execution-trace experiments on code LLMs"
)]
pub struct Cli {
    /// Cache directory (artifacts, manifests, locks).
    #[arg(long, global = true, env = "TW_CACHE_DIR", default_value = "cache")]
    pub cache_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs and report every problem at once.
    Validate {
        specs: Vec<PathBuf>,
        /// Check the spec alone: files it reads (data, model weights) may be
        /// missing, as on a machine that has not fetched them yet.
        #[arg(long)]
        allow_missing: bool,
    },
    /// Say what `tw run` would run, and why.
    Plan {
        spec: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        /// Print a stable JSON plan instead of the table.
        #[arg(long)]
        json: bool,
        /// Plan stages whose files (data, model weights) are missing as
        /// `missing`, naming each file, instead of failing.
        #[arg(long)]
        allow_missing: bool,
    },
    /// Run a spec: only what is not cached runs.
    Run {
        spec: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
        /// Stages run in parallel at most (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Keep running independent stages after one fails.
        #[arg(long)]
        keep_going: bool,
        /// Never draw progress bars.
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        executor: ExecutorArgs,
    },
    /// Run what a spec's `report` stages need and write their tables and plots.
    Report {
        spec: PathBuf,
        /// Only these report stages (default: every stage of kind `report`).
        #[arg(long, value_name = "STAGE")]
        stage: Vec<String>,
        /// Where files go: `<out>/<report stage>/table3.md`, ...
        #[arg(short, long, default_value = "reports")]
        out: PathBuf,
        /// Run nothing: write reports that are cached, fail on the others.
        #[arg(long)]
        no_run: bool,
        /// Stages run in parallel at most (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Never draw progress bars.
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        executor: ExecutorArgs,
    },
    /// Print the schema and first rows of a cached stage output.
    Show {
        spec: PathBuf,
        /// `stage`, `stage.output` or `stage[axis=value].output`.
        target: String,
        #[arg(long, default_value_t = 10)]
        head: usize,
    },
    /// Write a cached stage output as JSONL, CSV or Parquet.
    Export {
        spec: PathBuf,
        target: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file (default: stdout; required for parquet).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Remove cached artifacts that none of the given specs uses.
    Gc {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cache maintenance.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Score a generations file against a benchmark, like `evalplus.evaluate`.
    Score(ScoreArgs),
    /// Trace one run of a program and print a representation of the trace.
    Trace(TraceArgs),
    /// List stage kinds, or print one kind's documentation.
    Stages {
        #[command(subcommand)]
        command: Option<StagesCommand>,
    },
    /// Run one unit of work a cluster executor submitted (a Slurm array task).
    #[command(hide = true)]
    ExecTask { task: PathBuf },
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Where stages and shards run: `local` (this process) or `slurm` (one
    /// `sbatch` job array per stage, over the shared cache directory).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorKind,
    /// Slurm: resubmit a failed array task this many times.
    #[arg(long, default_value_t = 2)]
    pub retries: usize,
    /// Slurm: seconds between `squeue` polls.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub poll: f64,
    /// Slurm: an extra `sbatch` argument for every job (repeat it), e.g.
    /// `--sbatch-arg=--account=lab`.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

impl ExecutorArgs {
    fn executor(&self) -> Executor {
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

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// humaneval, humaneval-plus, mbpp, cruxeval-i, cruxeval-o, livecodebench, apps
    #[arg(long)]
    pub benchmark: String,
    /// The benchmark's problems file (JSONL, `.gz` too).
    #[arg(long)]
    pub problems: PathBuf,
    /// Generations: `{task_id, completion|solution}` JSONL; a JSON map of task id
    /// to generations (CRUXEval, APPS); LiveCodeBench's `[{question_id, code_list}]`.
    #[arg(long, required_unless_present = "reference")]
    pub samples: Option<PathBuf>,
    /// Score the benchmark's own reference solutions (a harness self-check).
    #[arg(long, conflicts_with = "samples")]
    pub reference: bool,
    /// pass@k values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub k: Vec<u32>,
    /// Seconds per test (default: the benchmark's harness default).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Only problems whose `contest_date` is on or after this day (YYYY-MM-DD; LiveCodeBench).
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<String>,
    /// Only problems whose `contest_date` is on or before this day (YYYY-MM-DD; LiveCodeBench).
    #[arg(long, value_name = "DATE")]
    pub end_date: Option<String>,
    /// Parallel sandbox workers (default: cores).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Write one JSON line per sample with its verdict.
    #[arg(long, value_name = "FILE")]
    pub details: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("run_input").required(true).args(["call", "stdin"])))]
pub struct TraceArgs {
    /// The Python program.
    pub program: PathBuf,
    /// Call a function: `--call 'f(1, [2, 3])'` (arguments are Python literals).
    #[arg(long)]
    pub call: Option<String>,
    /// Run the program as a script with this file on stdin (`-`: tw's own stdin).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// next, concise, codeexecutor, scratchpad, semcoder, concise2, notrace, or raw
    /// (the tracer's events as JSON lines).
    #[arg(long, short, default_value = "next")]
    pub format: String,
    /// Render this template instead of a built-in format.
    #[arg(long, value_name = "FILE", conflicts_with = "format")]
    pub template: Option<PathBuf>,
    /// The expected result (a Python literal; stdout text with --stdin): the
    /// run is then marked failing or not, as tests are.
    #[arg(long, value_name = "VALUE")]
    pub expected: Option<String>,
    /// Reproduce the original framework's states: off, sft, tts.
    #[arg(long, default_value = "off", value_parser = ["off", "sft", "tts"])]
    pub compat: String,
    /// Cut every value shown to this many characters.
    #[arg(long, value_name = "N")]
    pub max_value_chars: Option<usize>,
    /// Python run in the program's namespace first, untraced (harness imports).
    #[arg(long, value_name = "FILE")]
    pub prelude: Option<PathBuf>,
    /// Call depth traced (default: the entry function; 2 for scripts).
    #[arg(long)]
    pub depth: Option<u32>,
    /// Stop tracing after this many events.
    #[arg(long, default_value_t = 10000)]
    pub max_steps: u64,
    /// Seconds the run may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Re-hash every artifact and report corruption.
    Verify {
        /// Remove corrupt artifacts so the next run recomputes them.
        #[arg(long)]
        delete_corrupt: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StagesCommand {
    List,
    Describe { kind: String },
}

#[derive(Debug, Args, Default)]
pub struct SelectArgs {
    /// Run only these stages (their upstream must be cached).
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Run these stages and everything downstream of them.
    #[arg(long, value_name = "STAGE")]
    pub from: Vec<String>,
    /// Run these stages and everything upstream of them.
    #[arg(long, value_name = "STAGE")]
    pub to: Vec<String>,
    /// Rerun these stages even if cached.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
}

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

/// An error on its way to the user, with its exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

fn load_spec(path: &Path) -> Result<spec::Spec, Failure> {
    spec::load(path).map_err(|e| Failure::usage(e.render()))
}

fn open_store(dir: &Path) -> Result<Store, Failure> {
    Store::open(dir).map_err(|e| {
        Failure::runtime(format!(
            "error: cannot open the cache at {}: {e}",
            dir.display()
        ))
    })
}

fn make_plan(
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

fn run_options(
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
fn run_selection(
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

/// Run a parsed command line; stdout gets data, stderr gets logs.
pub fn execute(cli: Cli, stdout: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    match cli.command {
        Command::Validate {
            specs,
            allow_missing,
        } => {
            if specs.is_empty() {
                return Err(Failure::usage("error: name at least one spec file"));
            }
            let mut failed = Vec::new();
            for path in &specs {
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
        Command::Plan {
            spec,
            select,
            json,
            allow_missing,
        } => {
            let spec = load_spec(&spec)?;
            let store = open_store(&cli.cache_dir)?;
            let facts = Facts::default();
            let selection = Selection {
                allow_missing,
                ..select.into()
            };
            let plan = make_plan(&spec, &store, &selection, &facts)?;
            let text = if json {
                plan::render_json(&spec, &plan) + "\n"
            } else {
                plan::render_text(&spec, &plan)
            };
            stdout.write_all(text.as_bytes()).map_err(io)
        }
        Command::Run {
            spec,
            select,
            jobs,
            keep_going,
            no_progress,
            executor,
        } => {
            let spec = load_spec(&spec)?;
            let store = open_store(&cli.cache_dir)?;
            let options = run_options(jobs, keep_going, no_progress, executor.executor());
            run_selection(&spec, &store, &select.into(), &options)
        }
        Command::Report {
            spec,
            stage,
            out,
            no_run,
            jobs,
            no_progress,
            executor,
        } => {
            let spec = load_spec(&spec)?;
            let store = open_store(&cli.cache_dir)?;
            let reports = crate::report_cmd::report_nodes(&spec, &stage)?;
            if !no_run {
                let selection = Selection {
                    to: reports
                        .iter()
                        .map(|&i| spec.nodes()[i].id.clone())
                        .collect(),
                    ..Selection::default()
                };
                let options = run_options(jobs, false, no_progress, executor.executor());
                run_selection(&spec, &store, &selection, &options)?;
            }
            let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
            crate::report_cmd::write_reports(&spec, &plan, &store, &reports, &out, stdout)
        }
        Command::Show { spec, target, head } => {
            let spec = load_spec(&spec)?;
            let store = open_store(&cli.cache_dir)?;
            let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
            let path = inspect::locate(&spec, &plan, &store, &target)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            inspect::show(&path, head, stdout).map_err(|e| Failure::runtime(format!("error: {e}")))
        }
        Command::Export {
            spec,
            target,
            format,
            output,
        } => {
            if format == ExportFormat::Parquet
                && output.is_none()
                && std::io::stdout().is_terminal()
            {
                return Err(Failure::usage(
                    "error: parquet is binary: write it to a file with `-o FILE`",
                ));
            }
            let spec = load_spec(&spec)?;
            let store = open_store(&cli.cache_dir)?;
            let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
            let path = inspect::locate(&spec, &plan, &store, &target)
                .map_err(|e| Failure::usage(format!("error: {e}")))?;
            match output {
                Some(file) => {
                    let mut buffer = Vec::new();
                    inspect::export(&path, format, &mut buffer)
                        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
                    crate::store::write_atomic(&file, &buffer).map_err(io)
                }
                None => inspect::export(&path, format, stdout)
                    .map_err(|e| Failure::runtime(format!("error: {e}"))),
            }
        }
        Command::Gc { specs, dry_run } => {
            let store = open_store(&cli.cache_dir)?;
            let mut keep = BTreeSet::new();
            for path in &specs {
                let spec = load_spec(path)?;
                let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
                for planned in &plan.nodes {
                    let (Some(key), Some(manifest)) = (&planned.key, &planned.manifest) else {
                        continue;
                    };
                    keep.insert(key.clone());
                    // A sharded node's shards: kept so a rerun after new rows runs only new shards.
                    if let Some(parts) = manifest.notes.get("shard_keys").and_then(|k| k.as_array())
                    {
                        keep.extend(parts.iter().filter_map(|k| k.as_str().map(String::from)));
                    }
                }
            }
            let report = store
                .gc(&keep, dry_run)
                .map_err(|e| Failure::runtime(format!("error: {e}")))?;
            writeln!(
                stdout,
                "{} {} artifact{} ({:.1} MiB), kept {}{}",
                if dry_run { "would remove" } else { "removed" },
                report.removed,
                if report.removed == 1 { "" } else { "s" },
                report.bytes as f64 / (1024.0 * 1024.0),
                report.kept,
                if report.stale_staging > 0 {
                    format!(
                        ", cleaned {} interrupted staging dirs",
                        report.stale_staging
                    )
                } else {
                    String::new()
                }
            )
            .map_err(io)
        }
        Command::Cache {
            command: CacheCommand::Verify { delete_corrupt },
        } => {
            let store = open_store(&cli.cache_dir)?;
            let report = store
                .verify()
                .map_err(|e| Failure::runtime(format!("error: {e}")))?;
            for (key, problem) in &report.corrupt {
                writeln!(stdout, "corrupt {}: {problem}", &key[..key.len().min(12)]).map_err(io)?;
                if delete_corrupt {
                    store
                        .remove_object(key)
                        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
                }
            }
            writeln!(
                stdout,
                "{} artifacts ok, {} corrupt{}",
                report.ok,
                report.corrupt.len(),
                if delete_corrupt && !report.corrupt.is_empty() {
                    " (removed)"
                } else {
                    ""
                }
            )
            .map_err(io)?;
            if report.corrupt.is_empty() || delete_corrupt {
                Ok(())
            } else {
                Err(Failure::runtime(
                    "error: the cache has corrupt artifacts; `tw cache verify --delete-corrupt` removes them",
                ))
            }
        }
        Command::ExecTask { task } => {
            let done =
                crate::executor::exec_task(&task, |path| spec::load(path).map_err(|e| e.render()))
                    .map_err(|e| Failure::runtime(format!("error: {e}")))?;
            writeln!(
                stdout,
                "tw exec-task: {} in {:.2}s",
                if done.cached { "found cached" } else { "ran" },
                done.seconds
            )
            .map_err(io)
        }
        Command::Score(args) => crate::score_cmd::run(args, stdout),
        Command::Trace(args) => crate::trace_cmd::run(args, stdout),
        Command::Stages { command } => {
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
    }
}
