//! What isolation this machine gives programs, and the command that starts a
//! worker with it.
//!
//! The engine is bubblewrap: each worker runs inside its own `bwrap` with
//! `--unshare-all` (network, PID with its own `/proc`, IPC, UTS, user),
//! `--die-with-parent`, `--new-session`, an empty environment, the
//! interpreter's files read-only, a private `/tmp`, and nothing of `$HOME`,
//! the project, the cache or the spec directory. When `tw` is root, the worker
//! first drops to `nobody` (`setpriv`), so bubblewrap builds an unprivileged
//! user namespace as it would for anyone else. Inside, the jobs run in user,
//! PID and mount namespaces of their own (see `worker.py`).
//!
//! The policy ([`Policy`]: `--sandbox`, or `TW_SANDBOX`) says what to do
//! where bubblewrap cannot run: `auto` warns loudly and falls back to what
//! `unshare` allows (or to nothing), `require` refuses, `none` skips
//! bubblewrap on purpose. Whatever was used is probed once per process and
//! recorded in every manifest of a stage that ran programs.

use super::error::SandboxError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The uid a worker runs as when `tw` is root.
pub const UNPRIVILEGED_UID: u32 = 65534;
/// Bytes of each private tmpfs (bubblewrap's `/tmp`, and the `/tmp` and
/// `/dev/shm` the worker's jobs share, one at a time, emptied after each).
pub const TMPFS_BYTES: u64 = 256 << 20;
/// Where the worker script is bound inside the sandbox.
const WORKER_IN_SANDBOX: &str = "/tw/worker.py";

/// What to do about bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Use bubblewrap; where it cannot run, say so loudly and fall back.
    #[default]
    Auto,
    /// Use bubblewrap or fail.
    Require,
    /// Do not use bubblewrap (an explicit, recorded opt-out).
    None,
}

impl Policy {
    pub const NAMES: [&'static str; 3] = ["auto", "require", "none"];

    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "auto" => Some(Policy::Auto),
            "require" => Some(Policy::Require),
            "none" => Some(Policy::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Auto => "auto",
            Policy::Require => "require",
            Policy::None => "none",
        }
    }
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Set the policy for this process (the `--sandbox` flag); before any sandbox starts.
pub fn set_policy(policy: Policy) {
    let _ = POLICY.set(policy);
}

/// The policy: `--sandbox`, else `TW_SANDBOX`, else `auto`.
pub fn policy() -> Result<Policy, SandboxError> {
    if let Some(p) = POLICY.get() {
        return Ok(*p);
    }
    let value = std::env::var("TW_SANDBOX").unwrap_or_default();
    if value.is_empty() {
        return Ok(Policy::Auto);
    }
    match Policy::parse(&value) {
        Some(p) => Ok(p),
        None => Err(SandboxError::Policy {
            value,
            source_name: "TW_SANDBOX",
        }),
    }
}

/// How workers are started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Engine {
    /// Each worker in its own bubblewrap sandbox.
    Bubblewrap { path: PathBuf, version: String },
    /// `unshare`: new network and PID namespaces, the host's filesystem.
    Unshare,
    /// No namespaces at all: rlimits and a uid only.
    Bare,
}

/// What isolation programs get here, probed once per process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Isolation {
    pub policy: Policy,
    pub engine: Engine,
    pub python: PathBuf,
    pub python_version: String,
    /// The uid workers (and programs) run as.
    pub uid: u32,
    /// Programs cannot reach any network, loopback included.
    pub network_isolated: bool,
    /// Programs see only the interpreter's files, a private `/tmp` and `/dev`.
    pub filesystem_isolated: bool,
    /// Jobs run in user, PID and mount namespaces of their own, one at a
    /// time, under an init that kills whatever a job leaves and empties
    /// their `/tmp`: their own `/proc`, `kill(-1)` reaching only the job's
    /// processes, and a process limit that counts only them.
    pub job_namespaces: bool,
    /// Why job namespaces are not available, when they are not.
    pub job_namespaces_why: Option<String>,
    pub warnings: Vec<String>,
}

impl Isolation {
    /// A short, stable description for manifests and reports.
    pub fn fact(&self) -> String {
        let engine = match &self.engine {
            Engine::Bubblewrap { version, .. } => format!("bubblewrap {version}"),
            Engine::Unshare => "unshare (no filesystem isolation)".into(),
            Engine::Bare => "none (no namespaces)".into(),
        };
        format!(
            "{engine}; policy {}; python {}; uid {}; network {}; job namespaces {}",
            self.policy.as_str(),
            self.python_version,
            self.uid,
            if self.network_isolated {
                "isolated"
            } else {
                "REACHABLE"
            },
            if self.job_namespaces { "yes" } else { "no" },
        )
    }

    /// Everything a researcher needs to judge the isolation, for `tw sandbox check`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "NO" }.to_string();
        let mut rows = vec![
            ("policy".to_string(), self.policy.as_str().to_string()),
            (
                "engine".to_string(),
                match &self.engine {
                    Engine::Bubblewrap { path, version } => {
                        format!("bubblewrap {version} ({})", path.display())
                    }
                    Engine::Unshare => "unshare".into(),
                    Engine::Bare => "none".into(),
                },
            ),
            (
                "python".to_string(),
                format!("{} ({})", self.python.display(), self.python_version),
            ),
            ("programs run as uid".to_string(), self.uid.to_string()),
            (
                "filesystem isolated".to_string(),
                yes_no(self.filesystem_isolated),
            ),
            (
                "network isolated".to_string(),
                yes_no(self.network_isolated),
            ),
            ("job namespaces".to_string(), yes_no(self.job_namespaces)),
        ];
        if let Some(why) = &self.job_namespaces_why {
            rows.push(("job namespaces unavailable".into(), why.clone()));
        }
        rows
    }
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The interpreter programs run under: `TW_PYTHON`, else the system
/// `/usr/bin/python3` (readable by an unprivileged uid, unlike a pyenv under
/// `/root`), else `python3` from `PATH`, resolved to its real executable.
pub fn find_python() -> Result<(PathBuf, String), SandboxError> {
    let candidates: Vec<String> = match std::env::var("TW_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["/usr/bin/python3".into(), "python3".into()],
    };
    let mut errors = Vec::new();
    for candidate in candidates {
        let out = Command::new(&candidate)
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.version.split()[0])",
            ])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut lines = text.lines();
                let exe = lines.next().unwrap_or_default().trim().to_string();
                let version = lines.next().unwrap_or_default().trim().to_string();
                if !exe.is_empty() {
                    return Ok((PathBuf::from(exe), version));
                }
            }
            Ok(o) => errors.push(format!("{candidate}: exit {}", o.status)),
            Err(e) => errors.push(format!("{candidate}: {e}")),
        }
    }
    Err(SandboxError::NoPython(errors.join("; ")))
}

/// `bwrap` from `TW_BWRAP` or `PATH`.
fn find_bwrap() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TW_BWRAP")
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// The read-only binds that give the sandbox the interpreter: `/usr`, the
/// top-level library and binary dirs (symlinks on merged-/usr systems), and
/// the interpreter's prefix when it lives elsewhere.
fn interpreter_binds(python: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["--ro-bind".into(), "/usr".into(), "/usr".into()];
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let path = Path::new(top);
        match fs_err::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = fs_err::read_link(path) {
                    args.extend([
                        "--symlink".into(),
                        target.to_string_lossy().into_owned(),
                        top.into(),
                    ]);
                }
            }
            Ok(meta) if meta.is_dir() => {
                args.extend(["--ro-bind".into(), top.into(), top.into()]);
            }
            _ => {}
        }
    }
    // An interpreter outside /usr (e.g. /opt/python3.11/bin/python3): bind its prefix.
    if let Some(prefix) = python.parent().and_then(Path::parent)
        && !prefix.starts_with("/usr")
        && prefix != Path::new("/")
    {
        let prefix = prefix.to_string_lossy().into_owned();
        args.extend(["--ro-bind".into(), prefix.clone(), prefix]);
    }
    args
}

/// The environment every worker gets (nothing else of `tw`'s). `contained`:
/// the worker has a user namespace or a uid of its own, so a process limit
/// counts only its processes.
fn worker_env(home: &str, contained: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PATH", "/usr/bin:/bin".into()),
        ("LANG", "C.UTF-8".into()),
        ("HOME", home.into()),
        ("PYTHONHASHSEED", "0".into()),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
        ("PYTHONIOENCODING", "utf-8".into()),
        ("OMP_NUM_THREADS", "1".into()),
        ("TW_CONTAINED", if contained { "1" } else { "0" }.into()),
        ("TW_TMPFS_BYTES", TMPFS_BYTES.to_string()),
    ];
    // Test hook: `TW_FAILPOINT=sandbox_worker:exit|hang|garbage:N` makes each
    // worker fail on its N-th job (tests of the retry and the watchdog).
    if let Ok(failpoint) = std::env::var("TW_FAILPOINT")
        && failpoint.starts_with("sandbox_worker:")
    {
        env.push(("TW_FAILPOINT", failpoint));
    }
    env
}

/// The command that starts one worker (`role`: `judge`, or `probe`, which
/// answers its greeting and exits) with the given engine.
pub(super) fn worker_command(
    engine: &Engine,
    python: &Path,
    worker_file: &Path,
    role: &str,
) -> Command {
    let py = python.to_string_lossy().into_owned();
    let root = is_root();
    let mut argv: Vec<String> = Vec::new();
    if root {
        // Unprivileged from the start: bubblewrap then builds a user
        // namespace for `nobody` as for anyone, and process limits apply.
        let uid = UNPRIVILEGED_UID.to_string();
        if matches!(engine, Engine::Unshare) {
            // Namespaces first (root needs no user namespace for them), then the uid.
            argv.extend(["unshare", "--net", "--pid", "--fork", "--kill-child"].map(String::from));
        }
        argv.extend([
            "setpriv".into(),
            "--reuid".into(),
            uid.clone(),
            "--regid".into(),
            uid,
            "--clear-groups".into(),
            "--".into(),
        ]);
    } else if matches!(engine, Engine::Unshare) {
        argv.extend(
            ["unshare", "-r", "--net", "--pid", "--fork", "--kill-child"].map(String::from),
        );
    }
    let worker = match engine {
        Engine::Bubblewrap { path, .. } => {
            argv.push(path.to_string_lossy().into_owned());
            argv.extend(
                [
                    "--unshare-all",
                    "--die-with-parent",
                    "--new-session",
                    "--as-pid-1",
                    "--hostname",
                    "tw-sandbox",
                ]
                .map(String::from),
            );
            argv.extend(interpreter_binds(python));
            argv.extend(
                [
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--size",
                    &TMPFS_BYTES.to_string(),
                    "--tmpfs",
                    "/tmp",
                    "--ro-bind",
                    &worker_file.to_string_lossy(),
                    WORKER_IN_SANDBOX,
                    "--chdir",
                    "/tmp",
                    "--clearenv",
                ]
                .map(String::from),
            );
            for (k, v) in worker_env("/tmp", true) {
                argv.extend(["--setenv".into(), k.into(), v]);
            }
            argv.push("--".into());
            WORKER_IN_SANDBOX.to_string()
        }
        Engine::Unshare | Engine::Bare => worker_file.to_string_lossy().into_owned(),
    };
    // -s -S: no site-packages; -B: no .pyc writes.
    argv.extend([
        py,
        "-s".into(),
        "-S".into(),
        "-B".into(),
        worker,
        role.into(),
    ]);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    if !matches!(engine, Engine::Bubblewrap { .. }) {
        // `unshare -r` gives a user namespace; root drops to `nobody`.
        let contained = matches!(engine, Engine::Unshare) || root;
        for (k, v) in worker_env("/tmp", contained) {
            cmd.env(k, v);
        }
        cmd.current_dir("/tmp");
    }
    cmd
}

/// The worker's first line: what it found inside.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Greeting {
    pub ready: bool,
    pub uid: u32,
    pub job_namespaces: bool,
    #[serde(default)]
    pub job_namespaces_why: String,
}

/// Start `probe` workers until one engine works: its greeting, or why not.
fn try_engine(engine: &Engine, python: &Path, worker_file: &Path) -> Result<Greeting, String> {
    let mut cmd = worker_command(engine, python, worker_file, "probe");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    let out = wait_with_timeout(child, Duration::from_secs(60))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    match serde_json::from_str::<Greeting>(first) {
        Ok(g) if g.ready => Ok(g),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!(
                "the worker did not start ({}): {}",
                out.status,
                if tail.is_empty() {
                    "no output".to_string()
                } else {
                    tail.join(" | ")
                }
            ))
        }
    }
}

fn wait_with_timeout(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::Output, String> {
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the worker did not answer in {}s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn bwrap_version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_start_matches("bubblewrap ")
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
}

/// Probe what isolation works here under `policy`, using `worker_file`.
pub fn probe(policy: Policy, worker_file: &Path) -> Result<Isolation, SandboxError> {
    let (python, python_version) = find_python()?;
    let bwrap = if policy == Policy::None {
        None
    } else {
        find_bwrap().map(|path| Engine::Bubblewrap {
            version: bwrap_version(&path),
            path,
        })
    };
    let mut bwrap_failure = match (&bwrap, policy) {
        (None, Policy::None) => None,
        (None, _) => Some("`bwrap` is not installed (not on PATH)".to_string()),
        (Some(_), _) => None,
    };
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for engine in bwrap.into_iter().chain([Engine::Unshare, Engine::Bare]) {
        let fallback = !matches!(engine, Engine::Bubblewrap { .. });
        if fallback && warnings.is_empty() {
            warnings.push(fallback_warning(policy, bwrap_failure.as_deref())?);
        }
        match try_engine(&engine, &python, worker_file) {
            Ok(greeting) => {
                if engine == Engine::Bare {
                    warnings.push(
                        "no network or PID namespace (unshare failed): programs CAN reach the \
                         network and signal every process of their uid"
                            .into(),
                    );
                }
                return Ok(isolation_of(
                    policy,
                    engine,
                    python,
                    python_version,
                    greeting,
                    warnings,
                ));
            }
            Err(why) => match &engine {
                Engine::Bubblewrap { path, .. } => {
                    bwrap_failure = Some(format!("{}: {why}", path.display()));
                }
                _ => errors.push(why),
            },
        }
    }
    Err(SandboxError::Spawn(format!(
        "no way to start a worker here: {}",
        errors.join("; ")
    )))
}

/// Why workers run without bubblewrap, said once, loudly; or the refusal
/// `require` asks for.
fn fallback_warning(policy: Policy, bwrap_failure: Option<&str>) -> Result<String, SandboxError> {
    match (policy, bwrap_failure) {
        (Policy::Require, Some(why)) => Err(SandboxError::Unavailable {
            why: why.to_string(),
        }),
        (_, Some(why)) => Ok(format!(
            "NO SANDBOX: bubblewrap cannot run here ({why}); programs see this machine's files \
             and run as {}. Install bubblewrap (see `tw sandbox check`), or pass \
             `--sandbox none` to opt out on purpose",
            if is_root() {
                "uid nobody"
            } else {
                "your user, with your permissions"
            }
        )),
        (_, None) => {
            Ok("sandbox opted out (--sandbox none): programs see this machine's files".into())
        }
    }
}

fn isolation_of(
    policy: Policy,
    engine: Engine,
    python: PathBuf,
    python_version: String,
    greeting: Greeting,
    mut warnings: Vec<String>,
) -> Isolation {
    if !greeting.job_namespaces {
        warnings.push(format!(
            "no job namespaces ({}): jobs of one worker share /tmp, processes a program \
             detaches may outlive its job, and kill(-1) reaches the worker",
            greeting.job_namespaces_why
        ));
    }
    let bubblewrap = matches!(engine, Engine::Bubblewrap { .. });
    Isolation {
        policy,
        network_isolated: !matches!(engine, Engine::Bare),
        filesystem_isolated: bubblewrap,
        uid: greeting.uid,
        job_namespaces: greeting.job_namespaces,
        job_namespaces_why: (!greeting.job_namespaces).then_some(greeting.job_namespaces_why),
        engine,
        python,
        python_version,
        warnings,
    }
}
