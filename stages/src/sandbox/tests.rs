//! Sandbox tests: program shapes, verdicts, comparators, and hostile programs.
//! Each hostile program must be contained and reported, never crash or hang tw.

use super::*;

fn sandbox() -> Sandbox {
    Sandbox::new(Some(2)).expect("sandbox starts")
}

fn function_job(
    program: &str,
    entry: &str,
    tests: Vec<(serde_json::Value, serde_json::Value)>,
) -> Job {
    let mut job = Job::new(Mode::Function, program);
    job.entry_point = Some(entry.into());
    job.tests = tests
        .into_iter()
        .map(|(args, expected)| TestCase {
            args: Some(args),
            expected: Some(expected),
            ..TestCase::default()
        })
        .collect();
    job
}

fn script(program: &str) -> Job {
    let mut job = Job::new(Mode::Script, program);
    job.tests = vec![TestCase::default()];
    job.limits.timeout = 2.0;
    job
}

fn run(job: Job) -> JobReport {
    sandbox().run_all(&[job], &|| {}).remove(0)
}

fn verdicts(report: &JobReport) -> Vec<Verdict> {
    report.results.iter().map(|r| r.verdict).collect()
}

use serde_json::json;

#[test]
fn function_calls_compare_outputs_and_report_exceptions() {
    let job = function_job(
        "def div(a, b):\n    return a // b\n",
        "div",
        vec![
            (json!([7, 2]), json!(3)),
            (json!([7, 2]), json!(4)),
            (json!([1, 0]), json!(0)),
        ],
    );
    let r = run(job);
    assert_eq!(
        verdicts(&r),
        [Verdict::Pass, Verdict::WrongAnswer, Verdict::RuntimeError]
    );
    assert_eq!(r.results[2].exc_type.as_deref(), Some("ZeroDivisionError"));
    assert_eq!(r.results[1].output_repr.as_deref(), Some("3"));
}

#[test]
fn class_methods_and_tagged_values() {
    let mut job = function_job(
        "class Solution:\n    def pair(self, x):\n        return (x, {x})\n",
        "Solution.pair",
        vec![(json!([2]), json!({"tuple": [2, {"set": [2]}]}))],
    );
    let r = run(job.clone());
    assert_eq!(verdicts(&r), [Verdict::Pass]);
    assert_eq!(r.results[0].output_repr.as_deref(), Some("(2, {2})"));
    // LiveCodeBench compares tuples as lists
    job.comparator = Comparator::LcbCall;
    job.tests[0].expected = Some(json!([2, {"set": [2]}]));
    assert_eq!(verdicts(&run(job)), [Verdict::Pass]);
}

#[test]
fn stdin_programs_and_the_lcb_comparator() {
    let mut job = Job::new(
        Mode::Stdio,
        "n = int(input())\nprint(n * 2)\nprint(0.1 + 0.2 if n > 5 else '')\n",
    );
    job.comparator = Comparator::LcbStdio;
    job.tests = vec![
        TestCase {
            stdin: Some("3\n".into()),
            expected: Some(json!("6\n")),
            ..TestCase::default()
        },
        TestCase {
            stdin: Some("3\n".into()),
            expected: Some(json!("7")),
            ..TestCase::default()
        },
        TestCase {
            stdin: Some("x\n".into()),
            expected: Some(json!("")),
            ..TestCase::default()
        },
    ];
    let r = run(job);
    assert_eq!(
        verdicts(&r),
        [Verdict::Pass, Verdict::WrongAnswer, Verdict::RuntimeError]
    );
    assert_eq!(r.results[0].output, Some(json!("6\n\n")));
}

#[test]
fn evalplus_float_tolerance_and_type_checks() {
    let program = "def f(x):\n    return x\n";
    let job = function_job(
        program,
        "f",
        vec![
            (json!([1.0000001]), json!(1.0)),
            (json!([1.1]), json!(1.0)),
            (json!([[1.0, 2.0000001]]), json!([1.0, 2.0])),
            (json!([1]), json!(1.0)),
        ],
    );
    let mut job = job;
    job.comparator = Comparator::Evalplus;
    // 1 == 1.0 is exact in Python; the tolerance only applies when `==` fails
    assert_eq!(
        verdicts(&run(job)),
        [
            Verdict::Pass,
            Verdict::WrongAnswer,
            Verdict::Pass,
            Verdict::Pass
        ]
    );
}

#[test]
fn syntax_errors_are_reported_for_every_test_with_their_line() {
    let mut job = function_job(
        "def f(x):\n    return x +\n",
        "f",
        vec![(json!([1]), json!(1)), (json!([2]), json!(2))],
    );
    job.limits.timeout = 1.0;
    let r = run(job);
    assert_eq!(verdicts(&r), [Verdict::SyntaxError, Verdict::SyntaxError]);
    assert_eq!(r.results[0].line, Some(2));
}

#[test]
fn infinite_loop_times_out_per_test_and_later_tests_still_run() {
    let mut job = function_job(
        "def f(x):\n    while x:\n        pass\n    return 0\n",
        "f",
        vec![(json!([1]), json!(0)), (json!([0]), json!(0))],
    );
    job.limits.timeout = 0.3;
    let r = run(job);
    assert_eq!(verdicts(&r), [Verdict::Timeout, Verdict::Pass]);
}

#[test]
fn a_loop_inside_c_code_is_killed_by_the_backstop() {
    // `sum(range(...))` never returns to the interpreter, so SIGALRM cannot fire.
    let mut job = script("sum(range(10**12))");
    job.limits.timeout = 0.3;
    job.limits.backstop = Some(1.0);
    let started = std::time::Instant::now();
    let r = run(job);
    assert_eq!(verdicts(&r), [Verdict::Timeout]);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn memory_bomb_is_a_memory_verdict() {
    let mut job = script("x = bytearray(8 * 1024 ** 3)");
    job.limits.memory_bytes = 512 << 20;
    assert_eq!(verdicts(&run(job)), [Verdict::Memory]);
}

#[test]
fn deep_recursion_is_contained() {
    let r = run(script("def f(n):\n    return f(n + 1)\nf(0)\n"));
    assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
    assert_eq!(r.results[0].exc_type.as_deref(), Some("RecursionError"));
    // Lifting the recursion limit: the program grows until a limit stops it
    // (time, memory, or the C stack), and the verdict says which.
    let mut job =
        script("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)\n");
    job.limits.memory_bytes = 1 << 30;
    let started = std::time::Instant::now();
    let r = run(job);
    assert!(
        matches!(
            r.results[0].verdict,
            Verdict::RuntimeError | Verdict::Memory | Verdict::Timeout
        ),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn huge_output_hits_the_output_limit() {
    let mut job = script("while True:\n    print('x' * 1000)\n");
    job.limits.max_output_bytes = 100_000;
    assert_eq!(verdicts(&run(job)), [Verdict::OutputLimit]);
    let mut job = script("f = open('big', 'w')\nwhile True:\n    f.write('x' * 65536)\n");
    job.limits.max_file_bytes = 1 << 20;
    assert_eq!(verdicts(&run(job)), [Verdict::OutputLimit]);
}

#[test]
fn sys_exit_fails_a_test_but_a_clean_exit_ends_a_stdin_program() {
    let r = run(script("import sys\nsys.exit(0)\n"));
    assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
    assert_eq!(r.results[0].exc_type.as_deref(), Some("SystemExit"));
    let mut job = Job::new(Mode::Stdio, "print(1)\nexit()\nprint(2)\n");
    job.tests = vec![TestCase {
        stdin: Some(String::new()),
        expected: Some(json!("1")),
        ..TestCase::default()
    }];
    job.comparator = Comparator::LcbStdio;
    assert_eq!(verdicts(&run(job)), [Verdict::Pass]);
}

#[test]
fn os_exit_and_killing_the_parent_are_contained() {
    let r = run(script("import os\nos._exit(3)\n"));
    assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
    assert!(
        r.results[0]
            .exc_message
            .as_deref()
            .unwrap_or("")
            .contains("status 3"),
        "{r:?}"
    );
    // Try to kill the worker, then everything this uid can signal.
    let sb = sandbox();
    let jobs = vec![
        script(
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(1)\n",
        ),
        script("import os, signal\nos.kill(-1, signal.SIGKILL)\n"),
        script("x = 1"),
    ];
    let reports = sb.run_all(&jobs, &|| {});
    assert_ne!(reports[0].results[0].verdict, Verdict::Pass);
    assert_ne!(reports[1].results[0].verdict, Verdict::Pass);
    assert_eq!(
        reports[2].results[0].verdict,
        Verdict::Pass,
        "the sandbox still works afterwards"
    );
}

#[test]
fn fork_bomb_is_contained() {
    let iso = isolation().unwrap();
    if iso.unprivileged_uid.is_none() && !iso.pid_namespace {
        eprintln!("skipping: neither a uid drop nor a PID namespace is available here");
        return;
    }
    let mut job = script(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    );
    job.limits.timeout = 1.0;
    job.limits.backstop = Some(3.0);
    let started = std::time::Instant::now();
    let r = run(job);
    assert_ne!(r.results[0].verdict, Verdict::Pass);
    assert!(started.elapsed() < Duration::from_secs(20));
    // and nothing of it survives: a fresh job runs normally
    assert_eq!(verdicts(&run(script("x = 1"))), [Verdict::Pass]);
}

#[test]
fn environment_is_cleared() {
    // SAFETY of the test: only this test reads the variable.
    let job = function_job(
        "import os\ndef env():\n    return sorted(k for k in os.environ if k not in ('PATH', 'LANG', 'HOME', 'PWD', 'LC_CTYPE'))\n",
        "env",
        vec![(
            json!([]),
            json!([
                "OMP_NUM_THREADS",
                "PYTHONDONTWRITEBYTECODE",
                "PYTHONHASHSEED",
                "PYTHONIOENCODING",
                "TW_DROP_UID",
                "TW_SANDBOX_DIR"
            ]),
        )],
    );
    let r = run(job);
    assert_eq!(verdicts(&r), [Verdict::Pass], "{r:?}");
}

#[test]
fn network_is_unreachable_when_namespaces_work() {
    let iso = isolation().unwrap();
    let r = run(script(
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n",
    ));
    if iso.network_namespace {
        assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
        assert!(
            r.results[0]
                .exc_type
                .as_deref()
                .unwrap_or("")
                .contains("Error"),
            "{r:?}"
        );
    } else {
        eprintln!("warning: {:?}", iso.warnings);
    }
}

#[test]
fn writing_outside_the_work_dir_is_refused_when_unprivileged() {
    let iso = isolation().unwrap();
    let target = std::env::current_dir()
        .unwrap()
        .join("tw-sandbox-escape-test");
    let program = format!("open({:?}, 'w').write('x')\n", target.display().to_string());
    let r = run(script(&program));
    if iso.unprivileged_uid.is_some() {
        assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
        assert_eq!(r.results[0].exc_type.as_deref(), Some("PermissionError"));
        assert!(!target.exists());
    } else {
        let _ = fs_err::remove_file(&target);
    }
    // writing inside its own fresh working directory is fine
    assert_eq!(
        verdicts(&run(script("open('scratch.txt', 'w').write('x')\n"))),
        [Verdict::Pass]
    );
}

#[test]
fn hash_seed_is_fixed_so_set_order_is_deterministic() {
    let job = || {
        function_job(
            "def order():\n    return str({'alpha', 'beta', 'gamma', 'delta', 'epsilon'})\n",
            "order",
            vec![(json!([]), json!(null))],
        )
    };
    let a = run(job()).results[0].output_repr.clone();
    let b = run(job()).results[0].output_repr.clone();
    assert_eq!(a, b);
}

#[test]
fn many_jobs_spread_over_workers_in_order() {
    let sb = sandbox();
    let jobs: Vec<Job> = (0..40)
        .map(|i| {
            function_job(
                "def f(x):\n    return x * x\n",
                "f",
                vec![(json!([i]), json!(i * i))],
            )
        })
        .collect();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let reports = sb.run_all(&jobs, &|| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(count.into_inner(), 40);
    assert!(reports.iter().all(JobReport::passed));
}
