//! Sandbox tests: program shapes, verdicts, comparators, and hostile programs.
//! Each hostile program must be contained and reported, never crash or hang tw.

use super::*;
use std::time::Duration;

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
            expected: Some(expected.into()),
            ..TestCase::default()
        })
        .collect::<Vec<_>>()
        .into();
    job
}

fn script(program: &str) -> Job {
    let mut job = Job::new(Mode::Script, program);
    job.tests = vec![TestCase::default()].into();
    job.limits.timeout = 2.0;
    job
}

fn run(job: Job) -> JobReport {
    sandbox()
        .run_all(&[job], &|| {})
        .expect("the sandbox runs")
        .remove(0)
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
    std::sync::Arc::make_mut(&mut job.tests)[0].expected = Some(json!([2, {"set": [2]}]).into());
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
            expected: Some(json!("6\n").into()),
            ..TestCase::default()
        },
        TestCase {
            stdin: Some("3\n".into()),
            expected: Some(json!("7").into()),
            ..TestCase::default()
        },
        TestCase {
            stdin: Some("x\n".into()),
            expected: Some(json!("").into()),
            ..TestCase::default()
        },
    ]
    .into();
    let r = run(job);
    assert_eq!(
        verdicts(&r),
        [Verdict::Pass, Verdict::WrongAnswer, Verdict::RuntimeError]
    );
    assert_eq!(r.results[0].output, Some(json!("6\n\n").into()));
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
        expected: Some(json!("1").into()),
        ..TestCase::default()
    }]
    .into();
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
    // Try to kill the worker, the process group, then everything this uid
    // can signal: each job gets a report (no sandbox failure), and the
    // sandbox keeps working.
    let sb = sandbox();
    let jobs = vec![
        script(
            "import os, signal, time\nppid = os.getppid()\nos.kill(ppid, signal.SIGKILL)\ntime.sleep(0.2)\nassert ppid == 1, 'the parent is not the namespace init'\n",
        ),
        // (ESRCH: no process but itself to signal.)
        script(
            "import os, signal, time\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\ntime.sleep(0.5)\n",
        ),
        script("x = 1"),
    ];
    let reports = sb.run_all(&jobs, &|| {}).expect("the sandbox runs");
    if full_isolation() {
        // The program's parent is PID 1 of the jobs' namespace, which no
        // signal from inside reaches; kill(-1) reaches only the program.
        assert_eq!(reports[0].results[0].verdict, Verdict::Pass, "{reports:?}");
        assert_eq!(reports[1].results[0].verdict, Verdict::Pass, "{reports:?}");
    }
    assert_eq!(
        reports[2].results[0].verdict,
        Verdict::Pass,
        "the sandbox still works afterwards"
    );
}

/// Whether the full sandbox runs here (bubblewrap and job namespaces); a
/// test that needs it says so, and fails under `TW_REQUIRE_ISOLATION`.
fn full_isolation() -> bool {
    let iso = isolation().unwrap();
    crate::testing::have(
        crate::testing::Need::Isolation,
        iso.filesystem_isolated && iso.job_namespaces,
        &format!("the full sandbox does not run here: {}", iso.fact()),
    )
}

#[test]
fn fork_bomb_is_contained() {
    if !full_isolation() {
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
                "TW_CONTAINED",
                "TW_TMPFS_BYTES"
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
    if iso.network_isolated {
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
fn writing_outside_the_work_dir_is_refused() {
    let target = std::env::current_dir()
        .unwrap()
        .join("tw-sandbox-escape-test");
    let program = format!("open({:?}, 'w').write('x')\n", target.display().to_string());
    let r = run(script(&program));
    if full_isolation() {
        // The project is not in the sandbox at all.
        assert_eq!(verdicts(&r), [Verdict::RuntimeError]);
        assert_eq!(r.results[0].exc_type.as_deref(), Some("FileNotFoundError"));
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
    let reports = sb
        .run_all(&jobs, &|| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("the sandbox runs");
    assert_eq!(count.into_inner(), 40);
    assert!(reports.iter().all(JobReport::passed));
}

/// `run_dynamic` hands out a job as soon as an earlier report makes it
/// ready, maps every report to its job, and ends when nothing runs and
/// nothing is ready: here each report of x readies 2x and 2x + 1, below 16.
#[test]
fn dynamic_runs_hand_out_jobs_as_reports_make_them_ready() {
    let sb = sandbox();
    let ready = std::cell::RefCell::new(std::collections::VecDeque::from([1i64]));
    let handed = std::cell::RefCell::new(Vec::new());
    let mut seen = Vec::new();
    sb.run_dynamic(
        &mut || {
            let x = ready.borrow_mut().pop_front()?;
            handed.borrow_mut().push(x);
            Some(function_job(
                "def f(x):\n    return x * 3\n",
                "f",
                vec![(json!([x]), json!(x * 3))],
            ))
        },
        &mut |i, report| {
            assert!(report.passed(), "{report:?}");
            let x = handed.borrow()[i];
            seen.push(x);
            if x < 8 {
                ready.borrow_mut().extend([2 * x, 2 * x + 1]);
            }
        },
    )
    .expect("the sandbox runs");
    seen.sort_unstable();
    assert_eq!(seen, (1..16).collect::<Vec<_>>());
    assert_eq!(handed.into_inner().len(), 15, "each job handed out once");
}

// ---- the tracer -------------------------------------------------------------

fn traced(
    program: &str,
    entry: &str,
    args: serde_json::Value,
    settings: TraceSettings,
) -> (TestReport, Trace) {
    let mut job = Job::new(Mode::Function, program);
    job.entry_point = Some(entry.into());
    job.tests = vec![TestCase {
        args_json: Some(args),
        ..TestCase::default()
    }]
    .into();
    job.limits.timeout = 2.0;
    job.trace = Some(settings);
    let report = run(job).results.remove(0);
    let trace = report.parsed_trace().expect("well-formed").expect("traced");
    (report, trace)
}

fn steps(trace: &Trace) -> Vec<String> {
    trace
        .events
        .iter()
        .map(|e| {
            let changed = e
                .changed
                .as_ref()
                .map(|c| {
                    c.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!(
                "{} {}@{} d{} [{changed}]",
                e.step,
                e.kind.as_str(),
                e.line,
                e.depth
            )
        })
        .collect()
}

const COUNT_ABOVE: &str = "\
import functools

def logged(f):
    @functools.wraps(f)
    def inner(*a):
        return f(*a)
    return inner

@logged
def count_above(nums, k):
    total = 0
    for x in nums:
        if x > k:
            total += 1
    return total
";

#[test]
fn trace_records_each_line_with_the_state_it_left_behind() {
    let settings = TraceSettings {
        depth: Some(2),
        ..TraceSettings::default()
    };
    let (report, trace) = traced(COUNT_ABOVE, "count_above", json!([[3, 1], 2]), settings);
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(trace.truncated, None);
    assert_eq!(
        steps(&trace),
        [
            "0 call@5 d1 [a=([3, 1], 2),f=<function count_above>]",
            "1 line@6 d1 []",
            // The decorated function's call is on its `def` line, not the decorator's.
            "2 call@10 d2 [nums=[3, 1],k=2]",
            "3 line@11 d2 [total=0]",
            "4 line@12 d2 [x=3]",
            "5 line@13 d2 []",
            "6 line@14 d2 [total=1]",
            "7 line@12 d2 [x=1]",
            "8 line@13 d2 []",
            "9 line@12 d2 []",
            "10 line@15 d2 []",
            "11 return@15 d2 []",
            "12 return@6 d1 []",
        ]
    );
    let last = &trace.events[11];
    assert_eq!(last.value.as_deref(), Some("1"));
    let locals = last.locals.as_ref().expect("locals recorded");
    let names: Vec<&str> = locals.keys().map(String::as_str).collect();
    assert_eq!(names, ["nums", "k", "total", "x"]);
}

#[test]
fn trace_is_deterministic_and_depth_limits_scope() {
    let one = traced(
        COUNT_ABOVE,
        "count_above",
        json!([[5, 6, 7], 1]),
        TraceSettings::default(),
    );
    let two = traced(
        COUNT_ABOVE,
        "count_above",
        json!([[5, 6, 7], 1]),
        TraceSettings::default(),
    );
    assert_eq!(one.1, two.1);
    // Depth 1: only the entry (the decorator's wrapper) is traced.
    assert!(
        one.1
            .events
            .iter()
            .all(|e| e.depth == 1 && e.func == "logged.<locals>.inner")
    );
}

#[test]
fn a_crashing_program_keeps_its_partial_trace_and_the_exception() {
    let program = "def f(xs):\n    s = 0\n    for x in xs:\n        s += 10 // x\n    return s\n";
    let (report, trace) = traced(program, "f", json!([[5, 0]]), TraceSettings::default());
    assert_eq!(report.verdict, Verdict::RuntimeError);
    assert_eq!(report.exc_type.as_deref(), Some("ZeroDivisionError"));
    let kinds: Vec<&str> = trace.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[kinds.len() - 2..], ["exception", "return"]);
    let exc = &trace.events[kinds.len() - 2];
    assert_eq!(
        (exc.line, exc.exc_type.as_deref()),
        (4, Some("ZeroDivisionError"))
    );
    assert_eq!(
        exc.exc_message.as_deref(),
        Some("integer division or modulo by zero")
    );
    assert!(trace.events.last().unwrap().unwound);
    // The loop line before the crash shows the value that caused it.
    let raised = &trace.events[kinds.len() - 3];
    assert_eq!((raised.kind, raised.line), (TraceEventKind::Line, 4));
    let looped = &trace.events[kinds.len() - 4];
    assert_eq!(looped.line, 3);
    assert_eq!(looped.changed.as_ref().unwrap()["x"], json!("0"));
}

#[test]
fn trace_bounds_stop_tracing_and_say_so() {
    let program = "def spin(n):\n    t = 0\n    for i in range(n):\n        t += i\n    return t\n";
    let settings = TraceSettings {
        max_steps: 50,
        ..TraceSettings::default()
    };
    let (report, trace) = traced(program, "spin", json!([1_000_000]), settings);
    // Tracing switched off: the program finished at native speed.
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.output_repr.as_deref(), Some("499999500000"));
    assert_eq!(trace.events.len(), 50);
    assert_eq!(trace.truncated.as_deref(), Some("max_steps"));

    let settings = TraceSettings {
        max_bytes: 4096,
        max_steps: 1_000_000,
        ..TraceSettings::default()
    };
    let (_, trace) = traced(program, "spin", json!([1_000_000]), settings);
    assert_eq!(trace.truncated.as_deref(), Some("max_bytes"));
    assert!(trace.events.len() < 100, "{} events", trace.events.len());
}

#[test]
fn an_endless_loop_under_the_tracer_times_out_with_its_trace() {
    let program = "def hang():\n    n = 0\n    while True:\n        n += 1\n";
    let settings = TraceSettings {
        max_steps: 1_000_000_000,
        max_bytes: 1 << 30,
        record_locals: false,
        ..TraceSettings::default()
    };
    let mut job = Job::new(Mode::Function, program);
    job.entry_point = Some("hang".into());
    job.tests = vec![TestCase {
        args_json: Some(json!([])),
        ..TestCase::default()
    }]
    .into();
    job.limits.timeout = 1.0;
    job.trace = Some(settings);
    let report = run(job).results.remove(0);
    assert_eq!(report.verdict, Verdict::Timeout);
    let trace = report.parsed_trace().unwrap().unwrap();
    assert_eq!(trace.truncated.as_deref(), Some("timeout"));
    assert!(trace.events.len() > 100);
    assert!(trace.events.iter().all(|e| e.locals.is_none()));
}

#[test]
fn reprs_are_cut_in_the_middle_and_addresses_removed() {
    let program = "class Box:\n    pass\n\ndef f():\n    big = list(range(100000))\n    s = 'x' * 300\n    b = Box()\n    return len(big)\n";
    let settings = TraceSettings {
        max_repr: 20,
        ..TraceSettings::default()
    };
    let (_, trace) = traced(program, "f", json!([]), settings);
    let locals = trace
        .events
        .iter()
        .rev()
        .find_map(|e| e.locals.clone())
        .unwrap();
    assert_eq!(locals["big"], json!("[0, 1, 2...8, 99999]"));
    assert_eq!(locals["s"], json!("'xxxxxxx...xxxxxxxx'"));
    assert_eq!(locals["b"], json!("<__tw_pr...x object>"));
    assert!(!locals["b"].as_str().unwrap().contains("0x"));
}

#[test]
fn stdin_programs_trace_the_module_and_the_functions_it_calls() {
    let program = "def double(v):\n    return v * 2\n\nn = int(input())\nprint(double(n))\n";
    let mut job = Job::new(Mode::Stdio, program);
    job.tests = vec![TestCase {
        stdin: Some("21\n".into()),
        expected: Some(json!("42\n").into()),
        ..TestCase::default()
    }]
    .into();
    job.comparator = Comparator::LcbStdio;
    job.trace = Some(TraceSettings::default());
    let report = run(job.clone()).results.remove(0);
    assert_eq!(report.verdict, Verdict::Pass);
    let trace = report.parsed_trace().unwrap().unwrap();
    let funcs: Vec<(&str, u32)> = trace
        .events
        .iter()
        .map(|e| (e.func.as_str(), e.depth))
        .collect();
    assert!(funcs.contains(&("double", 2)), "{funcs:?}");
    assert_eq!(trace.events[0].func, "<module>");
    let n = trace
        .events
        .iter()
        .find(|e| e.line == 4 && e.kind == TraceEventKind::Line)
        .unwrap();
    assert_eq!(n.changed.as_ref().unwrap()["n"], json!("21"));

    job.trace = Some(TraceSettings {
        depth: Some(1),
        ..TraceSettings::default()
    });
    let trace = run(job).results.remove(0).parsed_trace().unwrap().unwrap();
    assert!(trace.events.iter().all(|e| e.func == "<module>"));
}

/// The call-based rules of lcb_runner's `grade_call_based` and APPS's
/// `testing_util.run_test`, case by case.
#[test]
fn lcb_and_apps_call_comparators_follow_their_harnesses() {
    let case = |comparator: Comparator, program: &str, expected: serde_json::Value| {
        let mut job = function_job(program, "f", vec![(json!([]), expected)]);
        job.comparator = comparator;
        verdicts(&run(job))[0]
    };
    use Comparator::{AppsCall, LcbCall};
    // LiveCodeBench: a returned tuple becomes a list, but only at the top level.
    assert_eq!(
        case(LcbCall, "def f():\n    return (1, 2)\n", json!([1, 2])),
        Verdict::Pass
    );
    assert_eq!(
        case(LcbCall, "def f():\n    return [(1, 2)]\n", json!([[1, 2]])),
        Verdict::WrongAnswer
    );
    assert_eq!(
        case(LcbCall, "def f():\n    return 1.0\n", json!(1)),
        Verdict::Pass
    );
    // APPS: outputs are often wrapped in a one-element list...
    assert_eq!(
        case(AppsCall, "def f():\n    return 5\n", json!([5])),
        Verdict::Pass
    );
    assert_eq!(
        case(AppsCall, "def f():\n    return 5\n", json!([6])),
        Verdict::WrongAnswer
    );
    // ...and a list of tuples matches the wrapped list of lists.
    assert_eq!(
        case(
            AppsCall,
            "def f():\n    return [(1, 2), (3, 4)]\n",
            json!([[[1, 2], [3, 4]]])
        ),
        Verdict::Pass
    );
    assert_eq!(
        case(AppsCall, "def f():\n    return (1, 2)\n", json!([1, 2])),
        Verdict::Pass
    );
}

#[test]
fn apps_stdio_comparator_accepts_its_lenient_forms() {
    let check = |printed: &str, expected: &str| {
        let mut job = Job::new(Mode::Stdio, format!("print({printed:?}, end='')\n"));
        job.comparator = Comparator::AppsStdio;
        job.tests = vec![TestCase {
            stdin: Some(String::new()),
            expected: Some(json!(expected).into()),
            ..TestCase::default()
        }]
        .into();
        verdicts(&run(job))[0]
    };
    assert_eq!(check("1 2\n3\n", "1 2\n3"), Verdict::Pass);
    assert_eq!(check("  1   2 \n\n3", "1 2\n3\n"), Verdict::Pass);
    assert_eq!(check("0.3333333", "0.33333333"), Verdict::Pass);
    assert_eq!(check("b a", "a b"), Verdict::Pass);
    assert_eq!(check("1 2", "1 3"), Verdict::WrongAnswer);
}

#[test]
fn in_place_mutations_and_deletions_are_seen() {
    let program = "\
def f():
    xs = [1, 2, 3]
    xs[0] = 1.0
    nested = [[1], 2]
    nested[0].append(5)
    d = {'a': 1}
    d['a'] = True
    del xs
    return d
";
    let (_, trace) = traced(program, "f", json!([]), TraceSettings::default());
    let changes: Vec<String> = trace
        .events
        .iter()
        .filter(|e| e.kind == TraceEventKind::Line)
        .map(|e| {
            let c = e.changed.as_ref().unwrap();
            c.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        changes,
        [
            "xs=[1, 2, 3]",
            // 1 -> 1.0 compares equal but is a new object with another repr.
            "xs=[1.0, 2, 3]",
            "nested=[[1], 2]",
            "nested=[[1, 5], 2]",
            "d={'a': 1}",
            "d={'a': True}",
            "",
            "",
        ]
    );
    let last = trace.events.last().unwrap();
    let names: Vec<&str> = last
        .locals
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        ["nested", "d"],
        "a deleted variable leaves the locals"
    );
}

/// Runs one of the tracer's Python check scripts beside a copy of
/// `tracer.py`; its stdout, or a panic with both streams when it fails.
fn tracer_script(name: &str, script: &str, args: &[&std::path::Path]) -> String {
    let (python, _) = find_python().expect("python");
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("tracer.py"), TRACER).unwrap();
    let check = dir.path().join(name);
    fs_err::write(&check, script).unwrap();
    let out = std::process::Command::new(python)
        .arg(&check)
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The still-line shortcut (looking only at what a line may rebind) changes no
/// trace on real programs: 800 CRUXEval functions and 974 MBPP programs with
/// their tests (module mode), shortcuts on and off, event for event.
#[test]
fn tracer_still_lines_change_no_trace_of_benchmark_programs() {
    let Some(bench) = crate::testing::shared_data("TW_BENCHMARKS", "benchmarks", "cruxeval.jsonl")
    else {
        return;
    };
    let stdout = tracer_script(
        "tracer_corpus_check.py",
        include_str!("tracer_corpus_check.py"),
        &[&bench],
    );
    // "ok <programs> <events> <events after a still line>"
    let counts: Vec<u64> = stdout
        .trim()
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts[0] > 1_700, "programs compared: {stdout}");
    assert!(
        counts[2] * 2 > counts[1],
        "most events should follow a still line, or the check proves little: {stdout}"
    );
}

/// The tracer's shortcuts (cutting reprs from the ends, skipping values that
/// cannot have changed, looking only at what a still line may rebind) must
/// give exactly what full reprs give, on programs written to trip them.
#[test]
fn tracer_shortcuts_match_full_reprs() {
    let stdout = tracer_script("tracer_check.py", include_str!("tracer_check.py"), &[]);
    assert_eq!(stdout.trim(), "ok");
}
