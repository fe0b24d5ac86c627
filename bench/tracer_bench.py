"""Benchmark (b): tw's tracer against untraced runs and PySnooper 1.2.3.

Each program runs untraced, under tw's tracer, and under PySnooper (the
original study's tracer), in this one process, on the same interpreter. Both
tracers record the same information: every line event, the variables each
step created or changed, return values, exceptions, reprs cut at 100
characters; PySnooper writes its log file, tw serializes its events to JSON
(what the sandbox sends back). tw also runs with every visible local recorded
at each step (the CodeExecutor representation needs them), which PySnooper
cannot do. tw's bounds are lifted so nothing is cut. The sandbox sends
locals as changes and tw rebuilds every local at each step when it reads the
trace: with `--expand` (the `trace_expand` example, built by tracer.sh) that
read is timed too (`tw read`, JSON text to typed events) and the last column
counts it.

    PYTHONPATH=<dir with pysnooper> python3 bench/tracer_bench.py [--repeat 3] [--expand BIN]
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "tw_tracer", os.path.join(HERE, "..", "stages", "src", "python", "sandbox", "tracer.py"))
tw_tracer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tw_tracer)
import pysnooper  # noqa: E402

PROGRAMS = {
    "loop_20k": ("""
def run(n):
    s = 0
    acc = []
    for i in range(n):
        if i % 3 == 0:
            s += i
        else:
            s -= 1
        if i % 1000 == 0:
            acc.append(s)
    return s
""", "run", (20000,), 1),
    "bubble_sort_120": ("""
def run(xs):
    xs = list(xs)
    n = len(xs)
    for i in range(n):
        for j in range(n - 1 - i):
            if xs[j] > xs[j + 1]:
                xs[j], xs[j + 1] = xs[j + 1], xs[j]
    return xs
""", "run", (list(range(120, 0, -1)),), 1),
    "recursive_fib_16": ("""
def run(n):
    if n < 2:
        return n
    a = run(n - 1)
    b = run(n - 2)
    return a + b
""", "run", (16,), 10000),
    "string_build_3k": ("""
def run(n):
    out = ''
    words = {}
    for i in range(n):
        w = chr(97 + i % 26)
        words[w] = words.get(w, 0) + 1
        out += w
    return len(out), sorted(words.items())[:3]
""", "run", (3000,), 1),
}


def load(source, name, filename):
    code = compile(source, filename, "exec")
    g = {"__name__": "bench"}
    exec(code, g)
    return g[name]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--expand", help="trace_expand binary: time tw's read of each trace")
    opts = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tw-tracer-bench-")
    print("python %s, pysnooper %s" % (sys.version.split()[0], pysnooper.__version__))
    print("%-18s %9s %9s %9s %9s %10s %8s %8s %10s %10s" % (
        "program", "untraced", "tw", "tw+locals", "tw read", "pysnooper", "tw/untr", "snoop/tw",
        "snoop/tw+l", "with read"))
    rows = []
    for label, (source, name, args, depth) in PROGRAMS.items():
        plain = load(source, name, "<plain>")
        # Each tracer traces its own copy, compiled under the filename it traces.
        traced = load(source, name, "<program>")
        snooped_fn = load(source, name, os.path.join(tmp, label + ".py"))
        with open(os.path.join(tmp, label + ".py"), "w") as f:
            f.write(source)

        def run_tw(record_locals):
            def go():
                t = tw_tracer.TwTracer(max_steps=0, max_bytes=0, max_repr=100, depth=depth,
                                       record_locals=record_locals, source=source)
                t.run(traced, *args)
                text = json.dumps(t.summary())
                assert t.truncated is None and len(text) > 0
                go.events = t.steps
            return go

        log = os.path.join(tmp, label + ".log")

        def run_snoop():
            if os.path.exists(log):
                os.unlink(log)
            pysnooper.snoop(log, depth=depth, normalize=True, color=False,
                            max_variable_length=100)(snooped_fn)(*args)

        results = {}
        for key, fn in (("untraced", lambda: plain(*args)), ("tw", run_tw(False)),
                        ("tw_locals", run_tw(True)), ("pysnooper", run_snoop)):
            results[key] = statistics.median(timed(fn) for _ in range(opts.repeat))
        results["expand"] = 0.0
        if opts.expand:
            t = tw_tracer.TwTracer(max_steps=0, max_bytes=0, max_repr=100, depth=depth,
                                   record_locals=True, source=source)
            t.run(traced, *args)
            dump = os.path.join(tmp, label + ".json")
            with open(dump, "w") as f:
                json.dump(t.summary(), f)
            out = subprocess.run([opts.expand, dump, "--repeat", str(max(3, opts.repeat))],
                                 check=True, capture_output=True, text=True).stdout.split()
            assert int(out[1]) == t.steps, (out, t.steps)
            results["expand"] = float(out[0])
        lines = sum(1 for _ in open(log))
        row = dict(program=label, **results, snoop_log_lines=lines)
        rows.append(row)
        print("%-18s %8.4fs %8.4fs %8.4fs %8.4fs %9.4fs %7.0fx %7.1fx %9.1fx %9.1fx" % (
            label, results["untraced"], results["tw"], results["tw_locals"], results["expand"],
            results["pysnooper"],
            results["tw"] / results["untraced"], results["pysnooper"] / results["tw"],
            results["pysnooper"] / results["tw_locals"],
            results["pysnooper"] / (results["tw_locals"] + results["expand"])))
    worst = min(r["pysnooper"] / r["tw"] for r in rows)
    worst_locals = min(r["pysnooper"] / r["tw_locals"] for r in rows)
    print("slowest speedup over PySnooper: %.1fx (same information), %.1fx (with all locals)" % (worst, worst_locals))
    if opts.expand:
        worst_read = min(r["pysnooper"] / (r["tw_locals"] + r["expand"]) for r in rows)
        print("with all locals and tw reading the trace (rebuilding every local at each step): %.1fx" % worst_read)
    json.dump(rows, open(os.path.join(HERE, "..", "target", "tracer_bench.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
