# tw sandbox worker: a warm fork-server for untrusted Python programs.
#
# Started once per core by tw (inside fresh network/PID namespaces where the
# kernel allows), it imports the standard library once and then, per job,
# forks a child that drops privileges, applies resource limits, runs the
# program on every test of the job in order (sharing module state across
# tests, as EvalPlus and LiveCodeBench do), and streams one JSON report per
# test over a pipe. The worker enforces the whole-job backstop, kills the
# child's process group (and, as PID 1 of its namespace, every stray
# process), and compares outputs itself: expected values never enter the
# child.
#
# Protocol: one JSON job per line on stdin; one JSON reply per line on
# stdout. The worker moves its reply channel to a private descriptor and points
# fd 1 at /dev/null, so nothing a program prints can reach tw.

import ast
import builtins
import decimal
import errno
import io
import json
import math
import os
import resource
import select
import signal
import sys
import time

# Modules benchmark programs commonly import: loaded once here, shared by forks.
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import fractions  # noqa: F401
import functools  # noqa: F401
import hashlib  # noqa: F401
import heapq  # noqa: F401
import itertools  # noqa: F401
import operator  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401
import typing  # noqa: F401
import array  # noqa: F401
import cmath  # noqa: F401
import numbers  # noqa: F401
import queue  # noqa: F401
import textwrap  # noqa: F401
import unicodedata  # noqa: F401

REPLY = os.fdopen(os.dup(1), "w", buffering=1)
DEFAULT_INT_DIGITS = sys.get_int_max_str_digits()
sys.set_int_max_str_digits(0)
DROP_UID = int(os.environ.get("TW_DROP_UID", "-1"))
IS_PID1 = os.getpid() == 1
MAX_REPORT = 64 * 1024 * 1024


def _quit(code=None):
    raise SystemExit(code)


# `-S` skips `site`, which is what defines exit() and quit(); programs use them.
builtins.exit = builtins.quit = _quit


class _Timeout(BaseException):
    """Raised in the child by SIGALRM when one test runs out of time."""
    trace_reason = "timeout"


class _OutputLimit(BaseException):
    """Raised in the child when a program prints more than allowed."""
    trace_reason = "output_limit"


class _BoundedText(io.TextIOBase):
    def __init__(self, limit):
        self.parts = []
        self.size = 0
        self.limit = limit

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        self.size += len(s)
        if self.size > self.limit:
            raise _OutputLimit()
        self.parts.append(s)
        return len(s)

    def getvalue(self):
        return "".join(self.parts)


# ---- values: a tagged JSON encoding that keeps Python types exact ----------

def encode(v, depth=0):
    if depth > 100:
        return {"repr": "<too deep>", "type": type(v).__name__}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        # JSON readers without arbitrary precision stop at 64 bits.
        if -(1 << 63) <= v < (1 << 63):
            return v
        # Hex, not decimal: linear time for huge values, and no digit limit.
        return {"int": hex(v)}
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return {"float": repr(v)}
        return v
    if isinstance(v, list):
        return [encode(x, depth + 1) for x in v]
    if isinstance(v, tuple):
        return {"tuple": [encode(x, depth + 1) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in v.items()]}
    if isinstance(v, (set, frozenset)):
        try:
            items = sorted(v)
        except TypeError:
            items = list(v)
        return {("set" if isinstance(v, set) else "frozenset"): [encode(x, depth + 1) for x in items]}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, complex):
        return {"complex": [v.real, v.imag]}
    try:
        r = repr(v)
    except BaseException:
        r = "<unrepresentable>"
    return {"repr": r[:10000], "type": type(v).__name__}


class Opaque:
    """A value the encoding could not carry: equal only to itself by repr and type."""

    def __init__(self, r, t):
        self.r, self.t = r, t

    def __eq__(self, other):
        return isinstance(other, Opaque) and (self.r, self.t) == (other.r, other.t)

    def __hash__(self):
        return hash((self.r, self.t))

    def __repr__(self):
        return self.r


def decode(v):
    if isinstance(v, list):
        return [decode(x) for x in v]
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(decode(x) for x in v["tuple"])
        if "dict" in v:
            return {_hashable(decode(k)): decode(x) for k, x in v["dict"]}
        if "set" in v:
            return set(_hashable(decode(x)) for x in v["set"])
        if "frozenset" in v:
            return frozenset(_hashable(decode(x)) for x in v["frozenset"])
        if "float" in v:
            return float(v["float"])
        if "int" in v:
            return int(v["int"], 16)
        if "bytes" in v:
            return bytes.fromhex(v["bytes"])
        if "complex" in v:
            return complex(*v["complex"])
        if "repr" in v:
            return Opaque(v["repr"], v.get("type", ""))
        raise ValueError("unknown tagged value: %r" % (list(v),))
    return v


def _hashable(x):
    if isinstance(x, list):
        return tuple(_hashable(i) for i in x)
    return x


def short_repr(v, limit=1000):
    if isinstance(v, int) and v.bit_length() > 4 * limit:
        # repr of a huge int is quadratic (and may hit the digit limit): summarize.
        return "<int of %d bits>" % v.bit_length()
    try:
        r = repr(v)
    except BaseException as e:
        r = "<repr failed: %s>" % type(e).__name__
    if len(r) > limit:
        half = (limit - 5) // 2
        r = r[:half] + " ... " + r[-half:]
    return r


# ---- comparators (documented in sandbox/mod.rs) ----------------------------

def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    return False


def _flatten_numbers(x):
    if isinstance(x, (list, tuple)):
        out = []
        for i in x:
            sub = _flatten_numbers(i)
            if sub is None:
                return None
            out.extend(sub)
        return out
    if isinstance(x, bool) or isinstance(x, (int, float)):
        return [float(x)]
    return None


def _shape(x):
    if isinstance(x, (list, tuple)):
        return (len(x), tuple(_shape(i) for i in x))
    return ()


def _allclose(a, b, rtol, atol):
    # numpy.allclose semantics on (nested) sequences of numbers, same shape.
    if _shape(a) != _shape(b):
        return False
    fa, fb = _flatten_numbers(a), _flatten_numbers(b)
    if fa is None or fb is None:
        return False
    for x, y in zip(fa, fb):
        if math.isinf(x) or math.isinf(y):
            if x != y:
                return False
            continue
        if math.isnan(x) or math.isnan(y):
            return False
        if not abs(x - y) <= atol + rtol * abs(y):
            return False
    return True


def _poly(xs, x):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


MBPP_OUTPUT_SET_EQ_TASKS = {
    "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
    "larg_nnum", "intersection_array", "find_dissimilar", "Diff",
}
MBPP_OUTPUT_NOT_NONE_TASKS = {"check_str", "text_match_three", "text_starta_endb"}


def compare_evalplus(out, exp, atol, entry_point, dataset, args):
    """EvalPlus `unsafe_execute` rules: exact `==`, special oracles, then
    float tolerance (atol defaults to 1e-6 for float outputs, rtol 1e-7)."""
    exact = out == exp
    if dataset == "mbpp":
        if entry_point == "are_equivalent":
            exact = True
        elif entry_point == "sum_div":
            exact = exact or out == 0
        elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
            try:
                exact = set(out) == set(exp)
            except TypeError:
                exact = False
        elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
            if isinstance(out, bool):
                exact = out == exp
            else:
                exact = exp == (out is not None)
    if dataset == "humaneval" and entry_point == "find_zero":
        try:
            return abs(_poly(*args, out)) <= atol
        except BaseException:
            return False
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return _allclose(out, exp, 1e-07, atol)
    return bool(exact)


def _lcb_stdio(out, exp):
    """LiveCodeBench stdio: strip, split lines, same line count; each line
    equal after strip, else equal as lists of Decimals."""
    out_lines = out.strip().split("\n")
    exp_lines = exp.strip().split("\n")
    if len(out_lines) != len(exp_lines):
        return False
    for o, e in zip(out_lines, exp_lines):
        o, e = o.strip(), e.strip()
        if o == e:
            continue
        try:
            od = [decimal.Decimal(t) for t in o.split()]
            ed = [decimal.Decimal(t) for t in e.split()]
        except (decimal.InvalidOperation, ValueError):
            return False
        if od != ed:
            return False
    return True


def _apps_stdio(out, exp):
    """APPS `testing_util` fallbacks: exact; stripped lines; whitespace tokens;
    floats with allclose; sets of tokens; 3-decimal rounding."""
    if isinstance(exp, list):
        exp = "\n".join(exp)
    if out == exp:
        return True
    out_lines = [l.strip() for l in out.strip().split("\n")]
    exp_lines = [l.strip() for l in exp.strip().split("\n")]
    if out_lines == exp_lines:
        return True
    out_lines = [l for l in out_lines if l]
    exp_lines = [l for l in exp_lines if l]
    if out_lines == exp_lines:
        return True
    out_tok = [l.split() for l in out_lines]
    exp_tok = [l.split() for l in exp_lines]
    if out_tok == exp_tok:
        return True
    try:
        of = [float(t) for l in out_tok for t in l]
        ef = [float(t) for l in exp_tok for t in l]
        if len(of) == len(ef) and _allclose(of, ef, 1e-05, 1e-08):
            return True
    except ValueError:
        pass
    if [set(l) for l in out_tok] == [set(l) for l in exp_tok]:
        return True
    if set(map(frozenset, out_tok)) == set(map(frozenset, exp_tok)):
        return True
    try:
        ro = [[round(float(t), 3) for t in l] for l in out_tok]
        re_ = [[round(float(t), 3) for t in l] for l in exp_tok]
        if ro == re_:
            return True
    except ValueError:
        pass
    return False


def compare(comparator, out, exp, test, job):
    if comparator == "exact":
        return out == exp
    if comparator == "evalplus":
        return compare_evalplus(out, exp, job.get("atol", 0) or 0, job.get("entry_point"),
                                job.get("dataset", "humaneval"), test.get("_args", ()))
    if comparator == "lcb_stdio":
        return isinstance(out, str) and _lcb_stdio(out, exp)
    if comparator == "lcb_call":
        # lcb_runner grade_call_based: a returned tuple counts as a list (top level only).
        if isinstance(out, tuple):
            out = list(out)
        return out == exp
    if comparator == "apps_stdio":
        return isinstance(out, str) and _apps_stdio(out, exp)
    if comparator == "apps_call":
        # APPS testing_util call-based: tuple -> list; a one-element wrapped
        # expected value; a list of tuples against the wrapped lists.
        if isinstance(out, tuple):
            out = list(out)
        ok = out == exp
        if isinstance(exp, list) and exp:
            ok = ok or out == exp[0]
        try:
            if isinstance(out[0], tuple):
                ok = ok or [list(x) for x in out] == exp[0]
        except BaseException:
            pass
        return ok
    raise ValueError("unknown comparator %r" % comparator)


# ---- the child: runs the program on every test ------------------------------

def _alarm(signum, frame):
    raise _Timeout()


def _set_limits(job):
    def lim(res, value):
        if value is None or value <= 0:
            return
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass
    mem = job.get("memory_bytes")
    lim(resource.RLIMIT_AS, mem)
    lim(resource.RLIMIT_DATA, mem)
    lim(resource.RLIMIT_FSIZE, job.get("max_file_bytes"))
    lim(resource.RLIMIT_NOFILE, job.get("max_open_files"))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if DROP_UID >= 0:
        lim(resource.RLIMIT_NPROC, job.get("max_processes"))
    cpu = job.get("cpu_seconds")
    if cpu:
        lim(resource.RLIMIT_CPU, int(math.ceil(cpu)))


class EntryPointError(Exception):
    """The program does not define the function the job calls."""


class TestInputError(Exception):
    """A test's arguments or expected value cannot be read: the row's fault."""


def _resolve(g, entry_point):
    # `name`, or `Class.method` (the class is instantiated once, LeetCode style)
    if "." in entry_point:
        cls, meth = entry_point.split(".", 1)
        if cls not in g:
            raise EntryPointError("the program defines no class `%s`" % cls)
        obj = g[cls]()
        if not hasattr(obj, meth):
            raise EntryPointError("class `%s` has no method `%s`" % (cls, meth))
        return getattr(obj, meth)
    if entry_point not in g:
        raise EntryPointError("the program defines no `%s`" % entry_point)
    return g[entry_point]


def _exc(e):
    try:
        msg = str(e)
    except BaseException:
        msg = "<unprintable>"
    return type(e).__name__, msg[:2000]


def child_main(job, w_fd, workdir):
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    # Programs see Python's default int/str digit limit (the worker lifts it).
    sys.set_int_max_str_digits(DEFAULT_INT_DIGITS)
    chan = os.fdopen(w_fd, "w", buffering=1)

    def emit(obj):
        chan.write(json.dumps(obj) + "\n")
        chan.flush()

    os.chdir(workdir)
    if DROP_UID >= 0:
        os.setgroups([])
        os.setgid(DROP_UID)
        os.setuid(DROP_UID)
    _set_limits(job)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.setrecursionlimit(job.get("recursion_limit", 1000) or 1000)
    mode = job["mode"]
    max_output = job.get("max_output_bytes", 1 << 20)
    program = job["program"]
    try:
        code = compile(program, "<program>", "exec")
    except (SyntaxError, ValueError) as e:
        t, m = _exc(e)
        emit({"test": -1, "verdict": "syntax_error", "exc_type": t, "exc_message": m,
              "line": getattr(e, "lineno", None)})
        return
    prelude = job.get("prelude")
    g = None
    if mode == "function":
        g = {"__name__": "__tw_program__", "__builtins__": builtins}
        sys.stdout = _BoundedText(max_output)
        signal.setitimer(signal.ITIMER_REAL, job.get("setup_timeout", 10.0))
        try:
            if prelude:
                exec(compile(prelude, "<prelude>", "exec"), g)
            exec(code, g)
            fn = _resolve(g, job["entry_point"])
        except _Timeout:
            emit({"test": -1, "verdict": "timeout", "exc_type": "Timeout", "exc_message": "program setup timed out"})
            return
        except MemoryError:
            emit({"test": -1, "verdict": "memory", "exc_type": "MemoryError", "exc_message": ""})
            return
        except BaseException as e:
            t, m = _exc(e)
            emit({"test": -1, "verdict": "runtime_error", "exc_type": t, "exc_message": m})
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    trace = job.get("trace")
    for i, test in enumerate(job["tests"]):
        timeout = test.get("timeout", job.get("timeout", 3.0))
        report = {"test": i}
        start = time.perf_counter()
        out_buf = _BoundedText(max_output)
        # One tracer per test (tw's tracer.py is prepended to this file).
        tracer = _new_tracer(trace, mode, program) if trace else None
        run = tracer.run if tracer else _call
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            if mode == "function":
                try:
                    args = _test_args(test)
                except Exception as e:
                    raise TestInputError("the test's arguments cannot be read: %s: %s" % _exc(e))
                if tracer is not None:
                    # Traces are shown with their inputs, as they were before the call.
                    report["input"] = encode(list(args))
                sys.stdout = out_buf
                result = run(fn, *args)
                if tracer is not None:
                    # The seed showed the arguments as they were after the call.
                    report["input_after"] = encode(list(args))
                report["output"] = encode(result)
                report["verdict"] = "ok"
            elif mode == "stdio":
                sys.stdin = io.TextIOWrapper(io.BytesIO(test.get("stdin", "").encode()), encoding="utf-8")
                sys.stdout = out_buf
                gl = {"__name__": "__main__", "__builtins__": builtins}
                if prelude:
                    exec(compile(prelude, "<prelude>", "exec"), gl)
                try:
                    run(exec, code, gl)
                except SystemExit as e:
                    if e.code not in (None, 0):
                        raise
                report["output"] = out_buf.getvalue()
                report["verdict"] = "ok"
            else:  # script: passes if it runs to completion
                sys.stdout = out_buf
                gl = {"__name__": "__main__", "__builtins__": builtins}
                run(exec, code, gl)
                report["verdict"] = "ok"
        except _Timeout:
            report.update(verdict="timeout", exc_type="Timeout", exc_message="test exceeded %gs" % timeout)
        except _OutputLimit:
            report.update(verdict="output_limit", exc_type="OutputLimit",
                          exc_message="more than %d bytes of output" % max_output)
        except MemoryError:
            report.update(verdict="memory", exc_type="MemoryError", exc_message="")
        except OSError as e:
            t, m = _exc(e)
            # Python ignores SIGXFSZ, so the file size limit surfaces as EFBIG.
            verdict = "output_limit" if e.errno == errno.EFBIG else "runtime_error"
            report.update(verdict=verdict, exc_type=t, exc_message=m)
        except BaseException as e:
            t, m = _exc(e)
            report.update(verdict="runtime_error", exc_type=t, exc_message=m)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout = sys.__stdout__
        report["duration"] = time.perf_counter() - start
        if mode == "stdio" and "output" not in report:
            report["output"] = out_buf.getvalue()
        if tracer is not None:
            tracer.stop()
            if tracer.truncated is None and report["verdict"] in ("timeout", "memory", "output_limit"):
                tracer.truncated = report["verdict"]
            report["trace"] = tracer.summary()
        emit(report)


def _call(fn, *args):
    return fn(*args)


def _new_tracer(settings, mode, program):
    depth = settings.get("depth")
    if depth is None:
        depth = 1 if mode == "function" else 2
    return TwTracer(filename="<program>", max_steps=settings.get("max_steps", 10000),
                    max_bytes=settings.get("max_bytes", 4 << 20),
                    max_repr=settings.get("max_repr", 100), depth=depth,
                    record_locals=settings.get("record_locals", True), source=program,
                    abort_types=(_Timeout, _OutputLimit))


# ---- the worker: forks, waits, cleans up, compares --------------------------

def _reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_strays():
    # The job's process group is already killed and reaped by run_job.
    if IS_PID1:
        # PID 1 of its own namespace: this reaches every process the program
        # left behind, even those that escaped with setsid().
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap_all()


def _make_workdir(base, job_id):
    d = os.path.join(base, "job-%s" % job_id)
    os.makedirs(d, exist_ok=True)
    if DROP_UID >= 0:
        os.chown(d, DROP_UID, DROP_UID)
    return d


def _remove_tree(path):
    try:
        os.rmdir(path)  # the common case: the program left nothing behind
        return
    except OSError:
        pass
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            try:
                os.unlink(os.path.join(root, f))
            except OSError:
                pass
        for d in dirs:
            p = os.path.join(root, d)
            try:
                if os.path.islink(p):
                    os.unlink(p)
                else:
                    os.rmdir(p)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


_NO_EXPECTATION = object()


def _test_args(test):
    """A function test's arguments, from whichever form tw sent."""
    if "args_literal" in test:
        return ast.literal_eval(test["args_literal"])
    if "args_json" in test:
        return test["args_json"]
    return decode(test.get("args", []))


def _expected(test):
    """A test's expected output (tagged JSON, plain JSON or a Python literal)."""
    if "expected" in test:
        return decode(test["expected"])
    if "expected_json" in test:
        return test["expected_json"]
    if "expected_literal" in test:
        return ast.literal_eval(test["expected_literal"])
    return _NO_EXPECTATION


def _finish(rep, test, job):
    """Turn a child's raw report into a verdict, comparing outputs here."""
    try:
        exp, exp_error = _expected(test), None
    except BaseException as e:
        exp, exp_error = _NO_EXPECTATION, e
    if job.get("trace") and job["mode"] == "function" and exp is not _NO_EXPECTATION:
        rep["expected"] = encode(exp)
    if rep.get("verdict") == "ok":
        try:
            if exp_error is not None:
                raise exp_error
            if exp is _NO_EXPECTATION:
                ok = True
            else:
                out = decode(rep.get("output")) if job["mode"] == "function" else rep.get("output")
                if job.get("comparator") == "evalplus":
                    test = dict(test, _args=_test_args(test))
                ok = compare(job.get("comparator", "exact"), out, exp, test, job)
        except BaseException as e:
            ok = False
            rep["exc_type"], rep["exc_message"] = "ComparatorError", "%s: %s" % _exc(e)
        rep["verdict"] = "pass" if ok else "wrong_answer"
    if job["mode"] == "function" and "output" in rep:
        try:
            rep["output_repr"] = short_repr(decode(rep["output"]))
        except BaseException:
            rep["output_repr"] = "<undecodable>"
        if not job.get("keep_output_values", True):
            rep.pop("output", None)
    return rep


def run_job(job, base):
    tests = job["tests"]
    n = len(tests)
    per_test = [t.get("timeout", job.get("timeout", 3.0)) for t in tests]
    backstop = job.get("backstop")
    if backstop is None:
        backstop = sum(per_test) + job.get("setup_timeout", 10.0) + 1.0
    stop_early = bool(job.get("stop_at_first_failure"))
    workdir = _make_workdir(base, job["id"])
    r_fd, w_fd = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r_fd)
            REPLY.close()
            os.close(0)
            child_main(job, w_fd, workdir)
        except BaseException:
            pass
        os._exit(0)
    os.close(w_fd)
    pidfd = os.pidfd_open(pid)
    pending = bytearray()
    reports = {}
    setup = None
    stopped = False
    eof = False
    exited = False
    killed_by_backstop = False
    deadline = started + backstop

    def take_lines():
        nonlocal setup, stopped
        while True:
            nl = pending.find(b"\n")
            if nl < 0:
                return
            line = bytes(pending[:nl])
            del pending[:nl + 1]
            try:
                rep = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rep, dict) or not isinstance(rep.get("test"), int):
                continue
            i = rep["test"]
            if i == -1:
                setup = rep
                continue
            if 0 <= i < n and i not in reports:
                rep = _finish(rep, tests[i], job)
                reports[i] = rep
                if stop_early and rep["verdict"] != "pass":
                    stopped = True

    while not (eof and exited) and not stopped:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            killed_by_backstop = True
            break
        watch = ([] if eof else [r_fd]) + ([] if exited else [pidfd])
        ready, _, _ = select.select(watch, [], [], remaining)
        if r_fd in ready:
            data = os.read(r_fd, 1 << 16)
            if data:
                pending.extend(data)
                if len(pending) > MAX_REPORT:
                    killed_by_backstop = True
                    break
                take_lines()
            else:
                eof = True
        if pidfd in ready:
            exited = True
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    _kill_strays()
    os.close(pidfd)
    if not eof and not stopped:
        try:
            while True:
                r, _, _ = select.select([r_fd], [], [], 0)
                if not r:
                    break
                data = os.read(r_fd, 1 << 16)
                if not data:
                    break
                pending.extend(data)
            take_lines()
        except OSError:
            pass
    os.close(r_fd)
    _remove_tree(workdir)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        crash = {signal.SIGXFSZ: ("output_limit", "file size limit exceeded"),
                 signal.SIGXCPU: ("timeout", "CPU time limit exceeded")}.get(
            sig, ("runtime_error", "killed by signal %d (%s)" % (sig, signal.Signals(sig).name)))
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        crash = ("runtime_error", "exited with status %d" % os.WEXITSTATUS(status))
    else:
        crash = ("runtime_error", "the program ended the process before reporting")
    results = []
    for i in range(n):
        if setup is not None:
            rep = dict(setup)
        elif i in reports:
            rep = reports[i]
        elif stopped:
            rep = {"verdict": "skipped", "exc_type": None,
                   "exc_message": "not run: an earlier test failed"}
        elif killed_by_backstop:
            rep = {"verdict": "timeout", "exc_type": "Timeout",
                   "exc_message": "whole-job time limit of %gs exceeded" % backstop}
        else:
            rep = {"verdict": crash[0], "exc_type": "Crash", "exc_message": crash[1]}
        rep["test"] = i
        results.append(rep)
    return {"id": job["id"], "results": results,
            "wall": time.perf_counter() - started}


def main():
    base = os.environ.get("TW_SANDBOX_DIR") or os.getcwd()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Forked children then leave the worker's objects alone when they collect
    # garbage, so fewer copy-on-write page faults per fork.
    import gc
    gc.collect()
    gc.freeze()
    REPLY.write(json.dumps({"ready": True, "pid1": IS_PID1, "uid": os.getuid(),
                            "drop_uid": DROP_UID, "python": sys.version.split()[0]}) + "\n")
    for line in sys.stdin.buffer:
        line = line.strip()
        if not line:
            continue
        try:
            job = json.loads(line)
            reply = run_job(job, base)
        except BaseException as e:
            reply = {"id": job.get("id") if isinstance(job, dict) else None,
                     "error": "%s: %s" % _exc(e)}
        REPLY.write(json.dumps(reply) + "\n")
        _reap_all()


if __name__ == "__main__":
    main()
