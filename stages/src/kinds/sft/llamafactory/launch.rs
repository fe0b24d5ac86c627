//! Running `llamafactory-cli train` (through torchrun on several GPUs): finding
//! the launcher, its versions for the cache key, streaming its log.

use super::super::params::SftParams;
use super::config::{CONFIG, LOG};
use crate::api::{EnvFact, Progress, RunCtx, StageError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

pub(super) const INSTALL_HELP: &str = "install LLaMA-Factory with `pip install llamafactory` (and `pip install deepspeed` for ZeRO-3), or `eval \"$(scripts/setup-llamafactory.sh)\"` for the CPU install tw is tested with; or name the command with `launcher:`, or set `launch: false` to only write the files";

/// The versions LLaMA-Factory trains with, read next to the launcher: its
/// own Python (a venv's `bin/python`) or the one on its `#!` line.
pub(super) const VERSIONS: &str = r#"l=$(command -v "$0") || exit 1
py="$(dirname "$(readlink -f "$l")")/python"
[ -x "$py" ] || py=$(sed -n '1s/^#!//p' "$l")
$py -c 'import importlib.metadata as m
def v(d):
    try:
        return m.version(d)
    except Exception:
        return "-"
print(" ".join(d + " " + v(d) for d in ("llamafactory", "transformers", "torch", "peft", "deepspeed")))'"#;

pub(in crate::kinds::sft) fn env_facts(p: &SftParams) -> Vec<EnvFact> {
    if !p.launch {
        return Vec::new();
    }
    vec![EnvFact::Command {
        name: "llamafactory".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            VERSIONS.into(),
            p.launcher.clone(),
        ],
    }]
}

/// The launcher: a path (relative to the spec) when it has a `/`, else a command on `PATH`.
pub(super) fn find_launcher(launcher: &str, ctx: &RunCtx<'_>) -> Result<PathBuf, StageError> {
    let found = if launcher.contains('/') {
        let path = ctx.resolve(launcher);
        is_executable(&path).then_some(path)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(launcher))
                .find(|c| is_executable(c))
        })
    };
    found.ok_or_else(|| missing_launcher(launcher))
}

pub(super) fn missing_launcher(launcher: &str) -> StageError {
    let place = if launcher.contains('/') {
        "does not exist or is not executable"
    } else {
        "is not on PATH"
    };
    StageError::failed(format!(
        "the LLaMA-Factory launcher `{launcher}` {place}; {INSTALL_HELP}"
    ))
}

pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `<launcher> train llama_factory/train.yaml` in `dir`, its output teed
/// into `llama_factory/train.log` and the progress line.
pub(super) fn launch(
    launcher: &Path,
    p: &SftParams,
    dir: &Path,
    deepspeed: bool,
    ctx: &RunCtx<'_>,
) -> Result<(), StageError> {
    let log_path = dir.join(LOG);
    let log = Mutex::new(fs_err::File::create(&log_path)?);
    let mut cmd = Command::new(launcher);
    cmd.arg("train")
        .arg(CONFIG)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NPROC_PER_NODE", p.gpus.to_string())
        .env("PYTHONUNBUFFERED", "1");
    // DeepSpeed wants a distributed launch even on one GPU.
    if p.gpus > 1 || deepspeed {
        cmd.env("FORCE_TORCHRUN", "1");
    }
    let shown = format!("{} train {CONFIG}", p.launcher);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing_launcher(&p.launcher),
        _ => StageError::failed(format!("cannot start `{shown}`: {e}")),
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let progress = ctx.progress();
    let status = std::thread::scope(|s| {
        if let Some(out) = stdout {
            s.spawn(|| pump(out, &log, progress));
        }
        if let Some(err) = stderr {
            s.spawn(|| pump(err, &log, progress));
        }
        child.wait()
    })?;
    drop(log);
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&fs_err::read(&log_path)?).into_owned();
    let kept = keep_log(dir, ctx.stage_id)
        .map(|p| {
            format!(
                " (kept at {}; the staging directory is discarded)",
                p.display()
            )
        })
        .unwrap_or_default();
    Err(StageError::failed(format!(
        "`{shown}` failed ({status}); its log is {LOG}{kept}; its last lines:\n{}",
        last_lines(&text, 20)
    )))
}

/// Copy bytes from a child's stream into the log; show its latest line as progress.
pub(super) fn pump(mut from: impl Read, log: &Mutex<fs_err::File>, progress: &dyn Progress) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = text
                    .split(['\n', '\r'])
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                {
                    progress.set_message(&line.chars().take(100).collect::<String>());
                }
            }
        }
    }
}

/// The last `n` lines of a log, progress bars (`\r` rewrites) reduced to their last state.
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit('\r').find(|s| !s.trim().is_empty()).unwrap_or(""))
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Copy a failed run's log and YAML out of the staging directory, which is discarded.
pub(super) fn keep_log(dir: &Path, stage_id: &str) -> Option<PathBuf> {
    let stage: String = stage_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let keep = std::env::temp_dir().join(format!("tw-sft-{stage}-{}-{nanos}", std::process::id()));
    fs_err::create_dir_all(&keep).ok()?;
    fs_err::copy(dir.join(CONFIG), keep.join("train.yaml")).ok()?;
    fs_err::copy(dir.join(LOG), keep.join("train.log")).ok()?;
    Some(keep.join("train.log"))
}
