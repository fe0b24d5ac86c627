//! The Slurm executor: every unit of a node is a task of one `sbatch` job
//! array over a cache the nodes share; each task runs the hidden command
//! `tw exec-task <task file>`, which commits its artifact exactly as the local
//! executor would. `tw` polls `squeue` until the job has left the queue, reads
//! which units are in the store, and resubmits the others (up to `--retries`
//! times) as a smaller array.

use super::local::run_unit;
use super::unit::{Unit, UnitDone};
use crate::spec::Spec;
use crate::spec::placement::Resources;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tw_stages::api::Progress;
use tw_stages::api::fsutil;
use tw_stages::python::sandbox;

#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Resubmissions of failed array tasks before the stage fails.
    pub retries: usize,
    /// How often to ask `squeue`.
    pub poll: Duration,
    /// Extra `sbatch` arguments for every job (`--account=...`, `--qos=...`).
    pub sbatch_args: Vec<String>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            retries: 2,
            poll: Duration::from_secs(5),
            sbatch_args: Vec::new(),
        }
    }
}

/// What `tw exec-task` reads: one unit plus where to find the spec and cache.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskFile {
    pub spec: PathBuf,
    pub cache_dir: PathBuf,
    pub unit: Unit,
    /// The sandbox policy of the submitting `tw` (`auto`, `require`,
    /// `none`): a node runs programs under the same one.
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot read task file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot load the spec {spec}:\n{message}")]
    Spec { spec: PathBuf, message: String },
    #[error("the spec changed since this task was submitted: {spec} no longer has stage `{node}`")]
    NoNode { spec: PathBuf, node: String },
    #[error(
        "the spec changed since this task was submitted: stage `{node}` in {spec} now has other params or kind; submit again with `tw run`"
    )]
    Changed { spec: PathBuf, node: String },
    #[error("{label}: {message}")]
    Failed { label: String, message: String },
}

/// Run the unit a task file names (the body of a Slurm array task).
pub fn exec_task(
    path: &Path,
    load: impl Fn(&Path) -> Result<Spec, String>,
) -> Result<UnitDone, TaskError> {
    let text = fs_err::read_to_string(path).map_err(|e| TaskError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let task: TaskFile = serde_json::from_str(&text).map_err(|e| TaskError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(policy) = task.sandbox.as_deref().and_then(sandbox::Policy::parse) {
        sandbox::set_policy(policy);
    }
    let spec = load(&task.spec).map_err(|message| TaskError::Spec {
        spec: task.spec.clone(),
        message,
    })?;
    let index = spec
        .nodes()
        .iter()
        .position(|n| n.id == task.unit.node)
        .ok_or_else(|| TaskError::NoNode {
            spec: task.spec.clone(),
            node: task.unit.node.clone(),
        })?;
    let node = &spec.nodes()[index];
    if node.kind() != task.unit.pre_image.kind
        || node.stage_impl.version() != task.unit.pre_image.kind_version
        || node.params.canonical != task.unit.pre_image.params
    {
        return Err(TaskError::Changed {
            spec: task.spec.clone(),
            node: node.id.clone(),
        });
    }
    let store = Store::open(&task.cache_dir).map_err(|e| TaskError::Failed {
        label: task.unit.label(),
        message: format!("cannot open the cache {}: {e}", task.cache_dir.display()),
    })?;
    run_unit(
        &spec,
        &store,
        index,
        &task.unit,
        &tw_stages::api::NoProgress,
    )
    .map_err(|message| TaskError::Failed {
        label: task.unit.label(),
        message,
    })
}

/// Submit `units` as one job array, wait, resubmit failures; read each
/// unit's result from the store.
pub fn run_units(
    options: &SlurmOptions,
    spec: &Spec,
    store: &Store,
    node_index: usize,
    units: &[Unit],
    progress: &dyn Progress,
    log: &(dyn Fn(String) + Sync),
) -> Vec<Result<UnitDone, String>> {
    let node = &spec.nodes()[node_index];
    let fail_all = |message: String| units.iter().map(|_| Err(message.clone())).collect();
    let dir = match job_dir(store, &node.id) {
        Ok(d) => d,
        Err(e) => return fail_all(format!("cannot create the Slurm job directory: {e}")),
    };
    let spec_path = match std::path::absolute(&spec.path) {
        Ok(p) => p,
        Err(e) => return fail_all(format!("cannot resolve the spec path: {e}")),
    };
    let cache_dir = match std::path::absolute(store.root()) {
        Ok(p) => p,
        Err(e) => return fail_all(format!("cannot resolve the cache path: {e}")),
    };
    for (i, unit) in units.iter().enumerate() {
        let task = TaskFile {
            spec: spec_path.clone(),
            cache_dir: cache_dir.clone(),
            unit: unit.clone(),
            sandbox: sandbox::policy().ok().map(|p| p.as_str().to_string()),
        };
        let text = serde_json::to_string_pretty(&task).expect("task is plain data");
        if let Err(e) = fsutil::write_atomic(&dir.join(format!("task-{i}.json")), text.as_bytes()) {
            return fail_all(format!("cannot write the task file: {e}"));
        }
    }
    let tw = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail_all(format!("cannot find the tw executable: {e}")),
    };
    progress.set_total(units.len() as u64);
    let mut results: Vec<Option<Result<UnitDone, String>>> = vec![None; units.len()];
    let mut pending: Vec<usize> = (0..units.len()).collect();
    let mut attempt = 0;
    loop {
        let script = script(&tw, &dir, attempt, &pending, &node.id, &node.resources);
        let script_path = dir.join(format!("job-{attempt}.sh"));
        if let Err(e) = fsutil::write_atomic(&script_path, script.as_bytes()) {
            return fail_all(format!("cannot write the job script: {e}"));
        }
        let job = match submit(&script_path, &options.sbatch_args) {
            Ok(id) => id,
            Err(e) => {
                for &i in &pending {
                    results[i] = Some(Err(e.clone()));
                }
                break;
            }
        };
        log(format!(
            "  slurm   {}  job {job}: {} task{} submitted{} ({})",
            node.id,
            pending.len(),
            if pending.len() == 1 { "" } else { "s" },
            if attempt > 0 {
                format!(", attempt {}", attempt + 1)
            } else {
                String::new()
            },
            script_path.display()
        ));
        if let Err(e) = wait(&job, options.poll, progress) {
            for &i in &pending {
                results[i] = Some(Err(e.clone()));
            }
            break;
        }
        let mut failed = Vec::new();
        for &i in &pending {
            match store.lookup(&units[i].key) {
                Some(m) => {
                    results[i] = Some(Ok(UnitDone {
                        seconds: m.wall_seconds,
                        outputs: m.outputs,
                        notes: m.notes,
                        cached: false,
                    }));
                    progress.inc(1);
                }
                _ => failed.push(i),
            }
        }
        if failed.is_empty() {
            break;
        }
        let reasons: Vec<String> = failed
            .iter()
            .map(|&i| {
                let log_path = dir.join(format!("attempt-{attempt}-task-{i}.log"));
                format!(
                    "{} failed (array task {i}; log {}): {}",
                    units[i].label(),
                    log_path.display(),
                    last_error(&log_path)
                )
            })
            .collect();
        if attempt >= options.retries {
            for (&i, reason) in failed.iter().zip(reasons) {
                results[i] = Some(Err(reason));
            }
            break;
        }
        for reason in &reasons {
            log(format!("  slurm   {reason}; resubmitting"));
        }
        pending = failed;
        attempt += 1;
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

fn job_dir(store: &Store, node: &str) -> std::io::Result<PathBuf> {
    store
        .slurm_job_dir(&job_name(node))
        .map_err(std::io::Error::other)
}

/// A stage id as Slurm and file names take it: `seq[model=a]` -> `seq_model_a_`.
fn job_name(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The array job: task `i` runs `tw exec-task task-i.json`.
pub fn script(
    tw: &Path,
    dir: &Path,
    attempt: usize,
    tasks: &[usize],
    node: &str,
    resources: &Resources,
) -> String {
    let array: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
    let name = job_name(node);
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=tw-{name}"),
        format!("#SBATCH --array={}", array.join(",")),
        format!(
            "#SBATCH --output={}",
            dir.join(format!("attempt-{attempt}-task-%a.log")).display()
        ),
    ];
    if let Some(cpus) = resources.cpus {
        lines.push(format!("#SBATCH --cpus-per-task={cpus}"));
    }
    if let Some(gpus) = resources.gpus.filter(|&g| g > 0) {
        lines.push(format!("#SBATCH --gres=gpu:{gpus}"));
    }
    if let Some(mem) = &resources.mem {
        lines.push(format!("#SBATCH --mem={mem}"));
    }
    if let Some(time) = &resources.time {
        lines.push(format!("#SBATCH --time={time}"));
    }
    if let Some(partition) = &resources.partition {
        lines.push(format!("#SBATCH --partition={partition}"));
    }
    lines.push("set -eu".into());
    lines.push(format!(
        "exec {} exec-task {}/task-\"$SLURM_ARRAY_TASK_ID\".json",
        quote(&tw.display().to_string()),
        quote(&dir.display().to_string())
    ));
    lines.join("\n") + "\n"
}

fn submit(script: &Path, extra: &[String]) -> Result<String, String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "the Slurm executor needs `sbatch` on PATH (Slurm's client tools); run on a login node, or use the local executor".to_string()
            } else {
                format!("cannot run sbatch: {e}")
            }
        })?;
    if !output.status.success() {
        return Err(format!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        return Err(format!("sbatch printed no job id for {}", script.display()));
    }
    Ok(id)
}

/// Poll `squeue` until no task of `job` is pending or running.
fn wait(job: &str, poll: Duration, progress: &dyn Progress) -> Result<(), String> {
    let mut errors = 0;
    loop {
        let output = Command::new("squeue")
            .args(["-h", "-r", "-j", job, "-o", "%T"])
            .output();
        match output {
            Ok(o) if o.status.success() => {
                errors = 0;
                let states = String::from_utf8_lossy(&o.stdout);
                let states: Vec<&str> = states.lines().map(str::trim).collect();
                if states.is_empty() {
                    return Ok(());
                }
                let running = states.iter().filter(|s| **s == "RUNNING").count();
                progress.set_message(&format!(
                    "job {job}: {running} running, {} queued",
                    states.len() - running
                ));
            }
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                // A job that left the queue long ago is unknown to squeue.
                if stderr.contains("Invalid job id") {
                    return Ok(());
                }
                errors += 1;
                if errors >= 10 {
                    return Err(format!(
                        "squeue keeps failing for job {job}: {}",
                        stderr.trim()
                    ));
                }
            }
            Err(e) => return Err(format!("cannot run squeue: {e}")),
        }
        std::thread::sleep(poll);
    }
}

/// The last meaningful lines of an array task's log, for the error.
fn last_error(log: &Path) -> String {
    match fs_err::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                "it wrote nothing".into()
            } else {
                lines[lines.len().saturating_sub(3)..].join(" | ")
            }
        }
        Err(_) => "no log (the job never started, or was cancelled)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_script_asks_for_the_stage_resources() {
        let resources = Resources {
            cpus: Some(8),
            gpus: Some(1),
            mem: Some("32G".into()),
            time: Some("4:00:00".into()),
            partition: Some("gpu".into()),
        };
        let text = script(
            Path::new("/opt/tw bin/tw"),
            Path::new("/cache/v1/slurm/x"),
            1,
            &[0, 3],
            "seq[model=a]",
            &resources,
        );
        assert_eq!(
            text,
            "#!/bin/bash\n\
             #SBATCH --job-name=tw-seq_model_a_\n\
             #SBATCH --array=0,3\n\
             #SBATCH --output=/cache/v1/slurm/x/attempt-1-task-%a.log\n\
             #SBATCH --cpus-per-task=8\n\
             #SBATCH --gres=gpu:1\n\
             #SBATCH --mem=32G\n\
             #SBATCH --time=4:00:00\n\
             #SBATCH --partition=gpu\n\
             set -eu\n\
             exec '/opt/tw bin/tw' exec-task '/cache/v1/slurm/x'/task-\"$SLURM_ARRAY_TASK_ID\".json\n"
        );
    }
}
