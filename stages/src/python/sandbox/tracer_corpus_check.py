# The tracer's still-line shortcut changes no trace: every CRUXEval function
# on its input and every MBPP program with its tests (module mode, as a stdin
# program is traced) gives the same events with the shortcuts on and off.
# Run by `cargo test` (sandbox tests) with the benchmarks directory:
#
#     python3 tracer_corpus_check.py <dir with tracer.py> <benchmarks dir>
#
# Prints "ok <programs> <events> <still-line events>".
import contextlib
import io
import json
import os
import random
import signal
import sys

sys.path.insert(0, sys.argv[1])
import tracer  # noqa: E402

bench = sys.argv[2]
cases = []
with open(os.path.join(bench, "cruxeval.jsonl"), encoding="utf-8") as f:
    for row in map(json.loads, filter(str.strip, f)):
        cases.append((row["id"], row["code"], "f", row["input"]))
with open(os.path.join(bench, "mbpp.jsonl"), encoding="utf-8") as f:
    for row in map(json.loads, filter(str.strip, f)):
        cases.append((row["task_id"], row["code"] + "\n" + "\n".join(row["test_list"]) + "\n", None, None))


class Stop(BaseException):
    trace_reason = "timeout"


def on_alarm(*_):
    raise Stop()


signal.signal(signal.SIGALRM, on_alarm)


def trace(source, entry, args_text, shortcuts):
    t = tracer.TwTracer(max_steps=3000, max_bytes=1 << 20, max_repr=100, depth=1 if entry else 2,
                        source=source, abort_types=(Stop,), shortcuts=shortcuts)
    g = {"__name__": "__tw_program__"}
    random.seed(0)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = compile(source, "<program>", "exec")
            if entry:
                exec(code, g)
                args = eval("(" + args_text + ",)", {})
                t.run(g[entry], *args)
            else:
                t.run(exec, code, g)
    except BaseException:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        t.stop()
    return t.expanded(), t.bytes


programs = events = still_events = 0
for label, source, entry, args in cases:
    fast = trace(source, entry, args, True)
    if fast[0]["truncated"] == "timeout":
        continue  # too slow to compare fairly: the cut-off point is timing
    slow = trace(source, entry, args, False)
    if slow[0]["truncated"] == "timeout":
        continue
    assert fast == slow, (label, next((a, b) for a, b in zip(fast[0]["events"], slow[0]["events"]) if a != b)
                          if fast[0]["events"] != slow[0]["events"] else (fast[1], slow[1]))
    programs += 1
    events += len(fast[0]["events"])
    still = tracer._tw_still_lines(source)
    evs = fast[0]["events"]
    still_events += sum(1 for a, b in zip(evs, evs[1:]) if a["kind"] == "line" and a["line"] in still)
print("ok", programs, events, still_events)
