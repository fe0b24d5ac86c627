//! The pool of warm workers: starting them, sending jobs, reading answers,
//! the hang watchdog, and one retry for a sandbox that failed.

use super::error::SandboxError;
use super::isolation::{self, Isolation};
use super::job::{Job, TestCase};
use super::report::{JobReport, TestReport};

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What a worker runs: a marker, the tracer's definitions, then the worker.
const WORKER: &str = concat!(
    "_TW_EMBEDDED = True\n",
    include_str!("tracer.py"),
    "\n",
    include_str!("worker.py")
);

/// Suites a worker keeps, oldest dropped first (the judge keeps as many).
const SUITES_KEPT: usize = 8;
/// Lines of a worker's stderr kept for error messages.
const STDERR_LINES: usize = 20;

/// Write the worker script where an unprivileged worker can read it.
fn write_worker(dir: &Path) -> Result<PathBuf, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    // Workers run as `nobody` when tw is root: they must read the script.
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let path = dir.join("worker.py");
    fs_err::write(&path, WORKER)?;
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

static ISOLATION: OnceLock<Result<Isolation, SandboxError>> = OnceLock::new();

fn isolation_with(worker_file: &Path) -> Result<&'static Isolation, SandboxError> {
    ISOLATION
        .get_or_init(|| isolation::probe(isolation::policy()?, worker_file))
        .as_ref()
        .map_err(Clone::clone)
}

/// The process-wide isolation probe (run once, under the policy then in force).
pub fn isolation() -> Result<&'static Isolation, SandboxError> {
    if let Some(iso) = ISOLATION.get() {
        return iso.as_ref().map_err(Clone::clone);
    }
    let dir = tempfile::Builder::new().prefix("tw-sandbox-").tempdir()?;
    let file = write_worker(dir.path())?;
    isolation_with(&file)
}

/// Why a job got no report from a worker.
enum Failure {
    /// The judge said the sandbox failed on this job (and ended itself).
    Reported(String),
    /// The worker died, hung or answered garbage: it is replaced.
    Broken(String),
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Suites this worker's judge holds, in the order it took them.
    suites: VecDeque<Arc<Vec<TestCase>>>,
}

impl Worker {
    fn spawn(iso: &Isolation, worker_file: &Path) -> Result<Worker, String> {
        let mut cmd = isolation::worker_command(&iso.engine, &iso.python, worker_file, "judge");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { return };
                let mut tail = tail.lock().expect("stderr tail");
                tail.push_back(line);
                if tail.len() > STDERR_LINES {
                    tail.pop_front();
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            lines,
            stderr,
            suites: VecDeque::new(),
        };
        match worker.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("\"ready\": true") => Ok(worker),
            Ok(line) => {
                let why = format!("unexpected greeting {line:?}{}", worker.stderr_tail());
                worker.kill();
                Err(why)
            }
            Err(_) => {
                worker.kill();
                Err(format!("the worker did not start{}", worker.stderr_tail()))
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().expect("stderr tail");
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                " (its last words: {})",
                tail.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    fn kill(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a job and wait for its report, at most its hard deadline.
    fn run(&mut self, job: &Job, id: u64) -> Result<JobReport, Failure> {
        let known = self.suites.iter().any(|s| Arc::ptr_eq(s, &job.tests));
        let suite = Arc::as_ptr(&job.tests) as usize as u64;
        let mut line = job.wire(id, suite, !known);
        line.push('\n');
        if !known {
            self.suites.push_back(Arc::clone(&job.tests));
            if self.suites.len() > SUITES_KEPT {
                self.suites.pop_front();
            }
        }
        if self.stdin.write_all(line.as_bytes()).is_err() || self.stdin.flush().is_err() {
            return Err(self.broken("it stopped reading jobs"));
        }
        let reply = match self.lines.recv_timeout(job.hard_deadline()) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                return Err(self.broken(&format!(
                    "it did not answer within {:.0}s (the job's backstop and 10s)",
                    job.hard_deadline().as_secs_f64()
                )));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(self.broken("it exited")),
        };
        // Read once, straight into the report's types: outputs stay text
        // (`Tagged`), never a tree, however large.
        #[derive(serde::Deserialize)]
        struct Reply {
            id: Option<serde_json::Value>,
            infra: Option<serde_json::Value>,
            results: Option<Vec<TestReport>>,
            wall: Option<f64>,
        }
        let reply: Reply = match serde_json::from_str(&reply) {
            Ok(reply) => reply,
            Err(e) => return Err(self.broken(&format!("it answered garbage ({e})"))),
        };
        if reply.id.as_ref().and_then(serde_json::Value::as_u64) != Some(id) {
            return Err(self.broken(&format!(
                "it answered job {} instead of {id}",
                reply.id.unwrap_or(serde_json::Value::Null)
            )));
        }
        if let Some(why) = reply.infra.as_ref().and_then(|e| e.as_str()) {
            // The judge's suites may have diverged from ours: start afresh.
            self.suites.clear();
            return Err(Failure::Reported(why.to_string()));
        }
        let (Some(results), Some(wall)) = (reply.results, reply.wall) else {
            return Err(self.broken("its report is malformed (no results or wall time)"));
        };
        let report = JobReport { results, wall };
        if report.results.len() != job.tests.len() {
            return Err(self.broken(&format!(
                "it reported {} tests of {}",
                report.results.len(),
                job.tests.len()
            )));
        }
        Ok(report)
    }

    fn broken(&mut self, what: &str) -> Failure {
        let exit = match self.child.try_wait() {
            Ok(Some(status)) => format!(", {status}"),
            _ => String::new(),
        };
        Failure::Broken(format!("{what}{exit}{}", self.stderr_tail()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a run of jobs cost the sandbox, for manifests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunSummary {
    /// Jobs run a second time because the sandbox failed on them.
    pub retries: usize,
}

/// A set of warm workers; [`Sandbox::run_each`] spreads jobs over them.
pub struct Sandbox {
    isolation: &'static Isolation,
    _dir: tempfile::TempDir,
    worker_file: PathBuf,
    workers: usize,
    /// Retries over every run of this sandbox.
    retries: AtomicUsize,
}

impl Sandbox {
    /// `workers`: parallel worker processes (default: the number of cores).
    pub fn new(workers: Option<usize>) -> Result<Sandbox, SandboxError> {
        let dir = tempfile::Builder::new().prefix("tw-sandbox-").tempdir()?;
        let worker_file = write_worker(dir.path())?;
        let isolation = isolation_with(&worker_file)?;
        let workers = workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Sandbox {
            isolation,
            _dir: dir,
            worker_file,
            workers,
            retries: AtomicUsize::new(0),
        })
    }

    pub fn isolation(&self) -> &Isolation {
        self.isolation
    }

    /// Jobs run a second time, over every run so far, because the sandbox
    /// failed on them (manifests record it).
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }

    /// Run every job that `jobs` yields, taking them as workers free up, and
    /// hand each report to `on_report` with the job's index as soon as it
    /// arrives (in any order). Memory stays flat in the number of jobs.
    /// Fails, after one retry, when the sandbox itself fails on a job.
    pub fn run_each<I>(
        &self,
        mut jobs: I,
        on_report: &mut dyn FnMut(usize, JobReport),
    ) -> Result<RunSummary, SandboxError>
    where
        I: Iterator<Item = Job>,
    {
        self.run_dynamic(&mut || jobs.next(), on_report)
    }

    /// Run jobs that become ready as earlier ones report: `next_job` (called
    /// on this thread) gives a job that can run now, or None when none can;
    /// each report goes to `on_report` with the index of its job in the order
    /// handed out, after which `next_job` is asked again. Ends when nothing
    /// runs and `next_job` has nothing: the caller's jobs wait on nothing
    /// else. Workers never idle while a ready job waits, which lets a
    /// benchmark start grading a problem's samples as soon as its reference
    /// outputs are in, while other references still run.
    pub fn run_dynamic(
        &self,
        next_job: &mut dyn FnMut() -> Option<Job>,
        on_report: &mut dyn FnMut(usize, JobReport),
    ) -> Result<RunSummary, SandboxError> {
        let (job_tx, job_rx) = channel::<(usize, Job)>();
        let job_rx = Mutex::new(job_rx);
        let retries = AtomicUsize::new(0);
        let (tx, rx) = channel::<Result<(usize, JobReport), SandboxError>>();
        let mut first_error = None;
        std::thread::scope(|scope| {
            for index in 0..self.workers {
                let tx = tx.clone();
                let (job_rx, retries) = (&job_rx, &retries);
                scope.spawn(move || {
                    let mut worker: Option<Worker> = None;
                    loop {
                        let Ok((i, job)) = job_rx.lock().expect("job queue").recv() else {
                            break;
                        };
                        let result = self.run_one(index, &mut worker, &job, i as u64, retries);
                        if tx.send(result.map(|r| (i, r))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut handed = 0usize;
            let mut in_flight = 0usize;
            let mut refill = |handed: &mut usize, in_flight: &mut usize| {
                while *in_flight < self.workers {
                    let Some(job) = next_job() else { break };
                    if job_tx.send((*handed, job)).is_err() {
                        break;
                    }
                    *handed += 1;
                    *in_flight += 1;
                }
            };
            refill(&mut handed, &mut in_flight);
            while in_flight > 0 {
                let Ok(message) = rx.recv() else { break };
                in_flight -= 1;
                match message {
                    Ok((i, report)) => {
                        on_report(i, report);
                        if first_error.is_none() {
                            refill(&mut handed, &mut in_flight);
                        }
                    }
                    // Hand out nothing more; wait for what runs.
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            drop(job_tx);
        });
        let retries = retries.into_inner();
        self.retries.fetch_add(retries, Ordering::Relaxed);
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunSummary { retries }),
        }
    }

    /// Run every job; reports come back in job order. `progress` is called
    /// once per finished job. For many jobs, prefer [`Sandbox::run_each`].
    pub fn run_all(
        &self,
        jobs: &[Job],
        progress: &(dyn Fn() + Sync),
    ) -> Result<Vec<JobReport>, SandboxError> {
        let mut slots: Vec<Option<JobReport>> = vec![None; jobs.len()];
        self.run_each(jobs.iter().cloned(), &mut |i, report| {
            slots[i] = Some(report);
            progress();
        })?;
        Ok(slots
            .into_iter()
            .map(|s| s.expect("every job reported"))
            .collect())
    }

    /// Run one job on this thread's worker, starting or replacing it as
    /// needed; a sandbox failure is retried once.
    fn run_one(
        &self,
        index: usize,
        slot: &mut Option<Worker>,
        job: &Job,
        id: u64,
        retries: &AtomicUsize,
    ) -> Result<JobReport, SandboxError> {
        if job.tests.is_empty() {
            return Ok(JobReport {
                results: Vec::new(),
                wall: 0.0,
            });
        }
        let mut reasons = Vec::new();
        for attempt in 0..2 {
            if attempt == 1 {
                retries.fetch_add(1, Ordering::Relaxed);
            }
            if slot.is_none() {
                match Worker::spawn(self.isolation, &self.worker_file) {
                    Ok(w) => *slot = Some(w),
                    Err(why) => {
                        reasons.push(format!("it could not start: {why}"));
                        continue;
                    }
                }
            }
            let worker = slot.as_mut().expect("worker present");
            match worker.run(job, id) {
                Ok(report) => return Ok(report),
                // The judge ends itself after reporting a failure: either
                // way the next try gets a fresh worker.
                Err(Failure::Reported(why) | Failure::Broken(why)) => {
                    reasons.push(why);
                    *slot = None;
                }
            }
        }
        Err(SandboxError::Worker {
            worker: index,
            job: job.describe(id),
            reason: reasons.join("; then: "),
        })
    }
}
