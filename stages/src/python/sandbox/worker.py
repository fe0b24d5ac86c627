# tw sandbox worker: grades untrusted Python programs.
#
# One file, two roles (tw binds it read-only at /tw/worker.py inside the
# worker's bubblewrap sandbox, with tracer.py prepended):
#
#   judge   the worker's first process (PID 1 of its sandbox). Reads jobs from
#           tw on stdin, keeps their expected values, has the zygote start each
#           program, accepts the program's reports in the order and number it
#           expects, compares outputs itself, and answers tw on a private copy
#           of stdout. It is not dumpable, so no program can read its memory
#           through /proc or ptrace it.
#   zygote  forked at start, before the judge has read any job, into new user,
#           PID and mount namespaces, whose PID 1 it is (a program cannot
#           signal it). It imports the standard library once and, per job,
#           forks the program's process, which reads its own job, takes a
#           fresh /tmp and /dev/shm, drops every capability and runs under
#           rlimits. The zygote never reads a job; it kills the program when
#           the judge says so (a backstop, an early stop) and then, with
#           kill(-1), everything the program left behind.
#
# The program's process gets inputs only and reports outputs, one frame per
# test, each carrying a per-job nonce. Frames out of order, repeated, for
# tests that do not exist, without the nonce, or unreadable are a protocol
# violation that fails the test. A program that ends before reporting every
# test fails the rest. In `calls` mode the benchmark's own check code runs
# here, in the judge, and every call it makes to a name the program defines
# is answered by the program's process: the comparison, float tolerance
# included, never runs beside the program.
#
# Protocol with tw: one JSON job per line on stdin; one JSON reply per line
# on stdout: {"id", "results": [...], "wall"}, or {"id", "infra": "..."} when
# the sandbox itself failed (never a verdict on the program).

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
import socket
import struct
import sys
import time

ROLE = sys.argv[1] if len(sys.argv) > 1 else "judge"

if ROLE == "zygote":
    # Modules benchmark programs commonly import: loaded once here, shared by forks.
    import array  # noqa: F401
    import bisect  # noqa: F401
    import cmath  # noqa: F401
    import collections  # noqa: F401
    import copy  # noqa: F401
    import dataclasses  # noqa: F401
    import datetime  # noqa: F401
    import fractions  # noqa: F401
    import functools  # noqa: F401
    import hashlib  # noqa: F401
    import heapq  # noqa: F401
    import itertools  # noqa: F401
    import numbers  # noqa: F401
    import operator  # noqa: F401
    import queue  # noqa: F401
    import random  # noqa: F401
    import re  # noqa: F401
    import statistics  # noqa: F401
    import string  # noqa: F401
    import textwrap  # noqa: F401
    import typing  # noqa: F401
    import unicodedata  # noqa: F401

DEFAULT_INT_DIGITS = sys.get_int_max_str_digits()
sys.set_int_max_str_digits(0)
# tw started the worker in a user namespace of its own (bubblewrap, unshare
# -r) or as a uid of its own (`nobody`): a process limit then counts only
# the worker's processes, not the user's others.
CONTAINED = os.environ.get("TW_CONTAINED") == "1"
# Bytes of one report frame, at most (a test's output and trace).
MAX_REPORT = 64 * 1024 * 1024
# Bytes of the jobs' /tmp and /dev/shm (each), where the worker mounts them.
TMPFS_BYTES = int(os.environ.get("TW_TMPFS_BYTES", str(256 << 20)))
# Seconds the judge waits past a job's backstop for the zygote to report the
# program's end before it declares the sandbox broken (an infrastructure
# failure, not a verdict).
RUNNER_GRACE = 5.0


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

_INT64 = (-(1 << 63), 1 << 63)
# JSON's own scalars: a list of these is its own tagged JSON (floats finite).
_JSON_SCALARS = frozenset((int, float, str, bool, type(None)))
_TEXT_SCALARS = frozenset((str, bool, type(None)))


def _plain_list(v):
    """A copy of `v`, a list, when it is its own tagged JSON (every item a
    string, bool, None, 64-bit int or finite float; checked at C speed);
    else None. Lists of numbers and strings are most outputs and inputs."""
    kinds = set(map(type, v))
    if kinds <= _TEXT_SCALARS:
        return list(v)
    if kinds == {int}:
        return list(v) if _INT64[0] <= min(v) and max(v) < _INT64[1] else None
    if kinds == {float}:
        return list(v) if all(map(math.isfinite, v)) else None
    return None


def encode(v, depth=0, handles=None):
    """Tagged JSON for `v`; with `handles` (calls mode), values JSON cannot
    carry are kept in that list and sent as a handle the judge can pass back."""
    if type(v) is list and depth < 100:
        plain = _plain_list(v)
        if plain is not None:
            return plain
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
        return [encode(x, depth + 1, handles) for x in v]
    if isinstance(v, tuple):
        return {"tuple": [encode(x, depth + 1, handles) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[encode(k, depth + 1, handles), encode(x, depth + 1, handles)] for k, x in v.items()]}
    if isinstance(v, (set, frozenset)):
        try:
            items = sorted(v)
        except TypeError:
            items = list(v)
        return {("set" if isinstance(v, set) else "frozenset"): [encode(x, depth + 1, handles) for x in items]}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, complex):
        return {"complex": [v.real, v.imag]}
    if isinstance(v, Handle):
        return {"handle": v.index, "repr": v.r, "type": v.t}
    if isinstance(v, type) and getattr(builtins, v.__name__, None) is v:
        # int, str, ValueError...: passed by name (MBPP passes types as arguments).
        return {"builtin": v.__name__}
    try:
        r = repr(v)
    except BaseException:
        r = "<unrepresentable>"
    if handles is not None:
        return {"handle": handles.add(v), "repr": r[:10000], "type": type(v).__name__}
    return {"repr": r[:10000], "type": type(v).__name__}


class Handle:
    """A value that stays in the program's process (calls mode). The check
    can pass it back, call it, and read or set its attributes; each is a
    request to the program's process. Equal only to the same handle."""

    __slots__ = ("index", "r", "t")

    def __init__(self, index, r, t):
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "t", t)

    def __eq__(self, other):
        return isinstance(other, Handle) and other.index == self.index

    def __hash__(self):
        return hash(("handle", self.index))

    def __repr__(self):
        return self.r

    def __getattr__(self, name):
        if name.startswith("__") or not _ACTIVE:
            raise AttributeError(name)
        return _ACTIVE[0].request({"op": "getattr", "handle": self.index, "attr": name})

    def __setattr__(self, name, value):
        if not _ACTIVE:
            raise AttributeError(name)
        _ACTIVE[0].request({"op": "setattr", "handle": self.index, "attr": name,
                            "value": encode(value)})

    def __call__(self, *args, **kwargs):
        if not _ACTIVE:
            raise TypeError("%s is not callable here" % self.r)
        return _ACTIVE[0].call({"handle": self.index}, args, kwargs)


# The check running in this judge (calls mode), which handles talk through.
_ACTIVE = []


class _HandleTable(list):
    """The program's side of handles: one index per object, kept alive."""

    def __init__(self):
        super().__init__()
        self.ids = {}

    def add(self, value):
        i = self.ids.get(id(value))
        if i is None:
            i = len(self)
            self.append(value)
            self.ids[id(value)] = i
        return i


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


def decode(v, handles=None):
    """The value of tagged JSON; handles resolve through `handles` (the
    program's side) or become `Handle`s (the judge's)."""
    if isinstance(v, list):
        if _JSON_SCALARS.issuperset(map(type, v)):
            return list(v)  # no tags inside: the list is its own value
        return [decode(x, handles) for x in v]
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(decode(x, handles) for x in v["tuple"])
        if "dict" in v:
            return {_hashable(decode(k, handles)): decode(x, handles) for k, x in v["dict"]}
        if "set" in v:
            return set(_hashable(decode(x, handles)) for x in v["set"])
        if "frozenset" in v:
            return frozenset(_hashable(decode(x, handles)) for x in v["frozenset"])
        if "float" in v:
            return float(v["float"])
        if "int" in v:
            return int(v["int"], 16)
        if "bytes" in v:
            return bytes.fromhex(v["bytes"])
        if "complex" in v:
            return complex(*v["complex"])
        if "builtin" in v:
            t = getattr(builtins, str(v["builtin"]), None)
            if not isinstance(t, type):
                raise ValueError("no built-in type %r" % (v["builtin"],))
            return t
        if "handle" in v:
            if handles is None:
                return Handle(v["handle"], v.get("repr", ""), v.get("type", ""))
            i = v["handle"]
            if not isinstance(i, int) or not 0 <= i < len(handles):
                raise ValueError("no value with handle %r" % (i,))
            return handles[i]
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



# ---- Linux: namespaces, mounts, capabilities (ctypes, no compiled helper) ---

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_LIBC = []


def _libc():
    if not _LIBC:
        import ctypes
        _LIBC.append((ctypes, ctypes.CDLL(None, use_errno=True)))
    return _LIBC[0]


def _check(rc, what):
    if rc != 0:
        ctypes, _ = _libc()
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _prctl(option, arg):
    ctypes, libc = _libc()
    _check(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)), "prctl(%d)" % option)


def _mount(source, target, fstype, flags, data):
    ctypes, libc = _libc()
    _check(libc.mount(source, target, fstype, ctypes.c_ulong(flags), data),
           "mount %s" % target.decode())


def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _drop_capabilities():
    ctypes, libc = _libc()
    header, data = _CAPS[0] if _CAPS else _capset_args(ctypes)
    _check(libc.capset(ctypes.byref(header), data), "capset")


# capset's arguments, built once (ctypes classes are slow to make).
_CAPS = []


def _capset_args(ctypes):
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    _CAPS.append((Header(0x20080522, 0), (Data * 2)()))
    return _CAPS[0]


def _enter_worker_namespaces():
    """In the helper the judge forks at start: new user, PID (for its
    children) and mount namespaces, which the zygote (PID 1 there) and every
    job live in. The helper keeps every capability in its new user namespace,
    and so does the zygote it forks; a program drops them all."""
    uid, gid = os.getuid(), os.getgid()
    ctypes, libc = _libc()
    # A process writes its own maps only while dumpable (else /proc/self is
    # root's); it holds no job yet, and the zygote makes itself undumpable.
    _prctl(PR_SET_DUMPABLE, 1)
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS), "unshare")
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", "%d %d 1" % (uid, uid))
    _write_file("/proc/self/gid_map", "%d %d 1" % (gid, gid))
    _prctl(PR_SET_DUMPABLE, 0)
    _mount(None, b"/", None, MS_REC | MS_PRIVATE, None)


def _seal_program_process():
    """No capabilities in the program's process, and no way to gain any."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _drop_capabilities()


# ---- the program's process --------------------------------------------------

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
    # Counted per user and user namespace: where the worker has its own
    # (bubblewrap, a job namespace) or its own uid, only this job's or this
    # worker's processes count; elsewhere it would count the user's others.
    if job.get("contained"):
        lim(resource.RLIMIT_NPROC, job.get("max_processes"))
    cpu = job.get("cpu_seconds")
    if cpu:
        lim(resource.RLIMIT_CPU, int(math.ceil(cpu)))


class EntryPointError(Exception):
    """The program does not define the function the job calls."""


class TestInputError(Exception):
    """A test's arguments cannot be read: the row's fault."""


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


def _test_args(test):
    """A function test's arguments, from whichever form tw sent."""
    if "args_literal" in test:
        return ast.literal_eval(test["args_literal"])
    if "args_json" in test:
        return test["args_json"]
    return decode(test.get("args", []))


class _Taint:
    """Values a traced program obtained from the environment, files it read or
    sockets (`env`, `file`, `socket`), so that every recorded value containing
    one is masked before the report leaves the program's process. Value
    matching on strings: a value transformed beyond recognition (hashed,
    reversed, split below 4 characters) is not caught, nor is a program that
    undoes the hooks; test inputs are given as arguments or stdin and are
    never tainted."""

    MIN_LENGTH = 4

    def __init__(self):
        self.values = {}
        self._pattern = None
        self._compiled_for = 0

    def add(self, value, source):
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if not isinstance(value, str) or not value:
            return
        pieces = [value] + value.splitlines() + value.split()
        for piece in pieces:
            piece = piece.strip()
            if len(piece) >= self.MIN_LENGTH:
                self.values.setdefault(piece, source)

    def _matcher(self):
        """One pattern for every value, longest first (rebuilt only when a
        value was added): a report is scanned once, not once per value."""
        if self._pattern is None or self._compiled_for != len(self.values):
            import re
            order = sorted(self.values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in order))
            self._compiled_for = len(self.values)
        return self._pattern

    def mask(self, report):
        """The report with every tainted value masked in every string it
        holds (trace events, locals, outputs, messages); keys are left alone,
        so the report keeps its shape."""
        if not self.values:
            return report
        pattern = self._matcher()
        values = self.values

        def placeholder(m):
            return "<from:%s>" % values[m.group(0)]

        def walk(v):
            if isinstance(v, str):
                return pattern.sub(placeholder, v)
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            return v

        # A trace's `events` are integers in base64, holding no value, and
        # its `changed` / `before` are (step, name, repr) triples: only the
        # reprs are masked, so a look-alike corrupts neither steps nor names.
        trace = report.get("trace")
        if not isinstance(trace, dict):
            return walk(report)
        kept = {key: trace.pop(key) for key in ("events", "changed", "before") if key in trace}
        masked = walk(report)
        trace.update(kept)
        for key, value in kept.items():
            if key != "events":
                value = list(value)
                value[2::3] = [walk(v) for v in value[2::3]]
            masked["trace"][key] = value
        return masked


class _TaintedFile:
    """A file object whose reads are recorded as tainted."""

    def __init__(self, f, taint):
        object.__setattr__(self, "_f", f)
        object.__setattr__(self, "_taint", taint)

    def _seen(self, data):
        self._taint.add(data, "file")
        return data

    def read(self, *a, **k):
        return self._seen(self._f.read(*a, **k))

    def readline(self, *a, **k):
        return self._seen(self._f.readline(*a, **k))

    def readlines(self, *a, **k):
        lines = self._f.readlines(*a, **k)
        for line in lines:
            self._seen(line)
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        return self._seen(next(self._f))

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *a):
        return self._f.__exit__(*a)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __setattr__(self, name, value):
        setattr(self._f, name, value)


def _install_taint(taint):
    """Record what the program obtains from os.environ / os.getenv, from files
    it opens for reading, and from sockets."""
    env_class = type(os.environ)
    env_getitem = env_class.__getitem__

    def getitem(self, key):
        value = env_getitem(self, key)
        taint.add(value, "env")
        return value

    env_class.__getitem__ = getitem
    real_open = builtins.open

    def tainted_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if "r" in mode or "+" in mode:
            return _TaintedFile(f, taint)
        return f

    builtins.open = tainted_open
    io.open = tainted_open
    import socket as _socket

    def wrap(name, pick):
        real = getattr(_socket.socket, name)

        def received(self, *a, **k):
            result = real(self, *a, **k)
            taint.add(pick(result), "socket")
            return result

        setattr(_socket.socket, name, received)

    wrap("recv", lambda r: r)
    wrap("recvfrom", lambda r: r[0])


def _close_other_fds(keep):
    keep = sorted(fd for fd in keep if fd is not None and fd > 2)
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _failure(e, timeout_message, max_output):
    """The verdict and details of the exception a test (or the setup) ended with."""
    if isinstance(e, _Timeout):
        return {"verdict": "timeout", "exc_type": "Timeout", "exc_message": timeout_message}
    if isinstance(e, _OutputLimit):
        return {"verdict": "output_limit", "exc_type": "OutputLimit",
                "exc_message": "more than %d bytes of output" % max_output}
    if isinstance(e, MemoryError):
        return {"verdict": "memory", "exc_type": "MemoryError", "exc_message": ""}
    t, m = _exc(e)
    # Python ignores SIGXFSZ, so the file size limit surfaces as EFBIG.
    if isinstance(e, OSError) and e.errno == errno.EFBIG:
        return {"verdict": "output_limit", "exc_type": t, "exc_message": m}
    return {"verdict": "runtime_error", "exc_type": t, "exc_message": m}


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


def _global_kind(value, handles):
    """How the judge may use one of the program's globals in calls mode."""
    if isinstance(value, type(sys)):
        return {"module": value.__name__}
    if callable(value):
        return {"callable": True}
    return {"value": encode(value, 0, handles)}


def program_main(job, report_w, request_r, sealed, workdir):
    """The program's process: run the program on each test, report each."""
    # A session of its own: kill(0) and killpg() from the program reach only
    # its own processes, never the zygote's group.
    os.setsid()
    if sealed:
        _seal_program_process()
    os.chdir(workdir)
    # An ordinary process to itself (its /proc/self is its own); the zygote
    # and the judge stay undumpable, out of its reach.
    _prctl(PR_SET_DUMPABLE, 1)
    # Programs see Python's default int/str digit limit (the worker lifts it).
    sys.set_int_max_str_digits(DEFAULT_INT_DIGITS)
    chan = os.fdopen(report_w, "w", buffering=1)
    nonce = job["nonce"]

    def emit(obj):
        obj["nonce"] = nonce
        chan.write(json.dumps(obj) + "\n")
        chan.flush()

    job["contained"] = sealed or CONTAINED
    _close_other_fds((report_w, request_r))
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
    trace = job.get("trace")
    # Traced runs are what gets published: record what the program reads
    # from the environment, files and sockets, to mask it in the report.
    taint = _Taint() if trace else None
    if taint is not None:
        _install_taint(taint)
    g = None
    if mode in ("function", "calls"):
        g = {"__name__": "__tw_program__" if mode == "function" else "__main__",
             "__builtins__": builtins}
        sys.stdout = _BoundedText(max_output)
        signal.setitimer(signal.ITIMER_REAL, job.get("setup_timeout", 10.0))
        try:
            if prelude:
                exec(compile(prelude, "<prelude>", "exec"), g)
            exec(code, g)
            fn = _resolve(g, job["entry_point"]) if mode == "function" else None
        except BaseException as e:
            failure = _failure(e, "program setup timed out", max_output)
            failure["test"] = -1
            emit(failure)
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout = sys.__stdout__
    if mode == "calls":
        _answer_calls(job, g, emit, request_r, max_output)
        return
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
        except BaseException as e:
            report.update(_failure(e, "test exceeded %gs" % timeout, max_output))
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
        if taint is not None:
            report = taint.mask(report)
        emit(report)


def _answer_calls(job, g, emit, request_r, max_output):
    """Calls mode: say what the program defines, then answer the judge's
    calls one by one until it says `end` (or closes the channel)."""
    handles = _HandleTable()
    names = {}
    for name in job.get("names", ()):
        if name not in g or name.startswith("__"):
            continue
        value = g[name]
        try:
            names[name] = _global_kind(value, handles)
        except BaseException:
            continue
    emit({"test": -1, "verdict": "ready", "globals": names})
    requests = os.fdopen(request_r, "rb")
    for line in requests:
        try:
            req = json.loads(line)
        except ValueError:
            return
        if req.get("end"):
            return
        k = req["k"]
        report = {"test": k}
        start = time.perf_counter()
        out_buf = _BoundedText(max_output)
        signal.setitimer(signal.ITIMER_REAL, max(req.get("timeout", 3.0), 0.001))
        args = None
        op = req.get("op", "call")
        try:
            try:
                if op == "call":
                    target = req["target"]
                    fn = g[target["name"]] if "name" in target else handles[target["handle"]]
                    args = decode(req.get("args", []), handles)
                    kwargs = {k2: decode(v, handles) for k2, v in req.get("kwargs", [])}
                else:
                    obj = handles[req["handle"]]
                    value = decode(req["value"], handles) if op == "setattr" else None
            except BaseException as e:
                raise TestInputError("the request cannot be read: %s: %s" % _exc(e))
            sys.stdout = out_buf
            if op == "call":
                result = fn(*args, **kwargs)
            elif op == "getattr":
                result = getattr(obj, req["attr"])
            else:
                result = setattr(obj, req["attr"], value)
            report["output"] = encode(result, 0, handles)
            report["verdict"] = "ok"
        except BaseException as e:
            report.update(_failure(e, "the check's time ran out", max_output))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout = sys.__stdout__
        if args is not None:
            # The check sees arguments the program changed in place, as it
            # would if it ran beside the program.
            try:
                report["args_after"] = [encode(a, 0, handles) for a in args]
            except BaseException:
                pass
        report["duration"] = time.perf_counter() - start
        emit(report)


# ---- the zygote: forks each program and watches it --------------------------

def _send_frame(sock, payload):
    sock.sendall(struct.pack("<Q", len(payload)) + payload)


def _recv_exact(sock, n):
    parts = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError()
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _recv_frame(sock):
    (n,) = struct.unpack("<Q", _recv_exact(sock, 8))
    return _recv_exact(sock, n)


def _remove_tree(path):
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


def _empty_dir(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            _remove_tree(p)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def program_process(job_r, report_w, request_r, nested, workdir):
    """The program's process, just forked: read its own job, then run it."""
    try:
        with os.fdopen(job_r, "rb") as f:
            job = json.loads(f.read())
        if job["mode"] != "calls":
            os.close(request_r)
            request_r = None
        # Every run starts `random` from the same state (forks would otherwise
        # share whatever state the zygote had), so a program that draws
        # random numbers gets the same verdict when it is graded again.
        import random
        random.seed(0)
        program_main(job, report_w, request_r, nested, workdir)
    except BaseException:
        pass
    os._exit(0)


def _reap_everything(wait):
    """Reap dead children; with `wait`, until none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if wait else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _supervise(pid, ctl, wake_r, nested):
    """Wait for the program's process to end, or kill it when the judge says
    so (`K`: its backstop, or it stops early). Then kill whatever it left
    behind. Its wait status, or None when the judge is gone. `wake_r`: a
    SIGCHLD wakeup pipe where pidfds are missing (Linux < 5.3)."""
    status = None
    watch = wake_r
    if wake_r is None:
        watch = os.pidfd_open(pid)
    while status is None:
        ready, _, _ = select.select([ctl, watch], [], [])
        if ctl in ready:
            op = ctl.recv(1)
            if not op:
                os.kill(pid, signal.SIGKILL)
                return None
            if op == b"K":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if wake_r is not None and wake_r in ready:
            try:
                os.read(wake_r, 256)
            except BlockingIOError:
                pass
        try:
            done, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, st = pid, 0
        if done == pid:
            status = st
    if wake_r is None:
        os.close(watch)
    if nested:
        # PID 1 of this namespace: kill(-1) reaches every process the program
        # left behind, even those that escaped with setsid().
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap_everything(wait=True)
    else:
        # Without a PID namespace, strays that left the process group survive.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _reap_everything(wait=False)
    return status


def zygote_main(ctl, nested, why):
    """Preload the standard library, then per job (`S`): fork the program's
    process, hand the judge its channels, watch it, report its wait status.
    The zygote never reads a job: each program reads its own from the judge,
    so no job (another sample, a canonical solution) is in the memory that
    later forks inherit."""
    # PID 1 of the jobs' namespace ignores every signal it has no handler
    # for; Python's SIGINT handler would let a program stop it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prctl(PR_SET_DUMPABLE, 0)
    # What every program's process calls, made once here.
    _capset_args(_libc()[0])
    if nested:
        try:
            _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        except OSError as e:
            why = "no private /proc (%s)" % e
        # A /tmp and /dev/shm of the jobs' own, emptied after each job.
        options = ("size=%d,mode=1777" % TMPFS_BYTES).encode()
        for target in (b"/tmp", b"/dev/shm"):
            if os.path.isdir(target):
                _mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, options)
    # Modules benchmark programs commonly import: loaded once here, shared by forks.
    import array, bisect, cmath, collections, copy, dataclasses, datetime  # noqa: F401,E401
    import fractions, functools, hashlib, heapq, itertools, numbers  # noqa: F401,E401
    import operator, queue, random, re, statistics, string, textwrap  # noqa: F401,E401
    import typing, unicodedata  # noqa: F401,E401
    # A program's end is seen through a pidfd; where the kernel has none, a
    # SIGCHLD handler wakes a pipe.
    wake_r = wake_w = None
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
    import gc
    gc.collect()
    gc.freeze()
    _send_frame(ctl, json.dumps({"nested": nested, "why": why}).encode())
    base = os.environ.get("TW_SANDBOX_DIR") or "/tmp"
    while True:
        try:
            op = _recv_exact(ctl, 1)
        except EOFError:
            os._exit(0)
        if op == b"K":
            continue  # a stop for a program that had already ended
        if op != b"S":
            os._exit(2)
        workdir = "/tmp"
        try:
            if not nested:
                import tempfile
                workdir = tempfile.mkdtemp(prefix="tw-job-", dir=base)
            job_r, job_w = os.pipe()
            report_r, report_w = os.pipe()
            request_r, request_w = os.pipe()
            pid = os.fork()
        except OSError as e:
            ctl.sendall(b"E")
            _send_frame(ctl, ("%s: %s" % _exc(e)).encode())
            continue
        if pid == 0:
            try:
                if wake_r is not None:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                ctl.close()
                for fd in (job_w, report_r, request_w):
                    os.close(fd)
                program_process(job_r, report_w, request_r, nested, workdir)
            finally:
                os._exit(0)
        socket.send_fds(ctl, [b"J"], [job_w, report_r, request_w])
        for fd in (job_r, job_w, report_r, report_w, request_r, request_w):
            os.close(fd)
        status = _supervise(pid, ctl, wake_r, nested)
        if nested:
            # Nothing of this job is left for the next: its processes are
            # dead, and its files go.
            _empty_dir("/tmp")
            _empty_dir("/dev/shm")
        else:
            _remove_tree(workdir)
        if status is None:
            os._exit(0)
        ctl.sendall(b"X")
        _send_frame(ctl, json.dumps({"status": status}).encode())


def start_zygote(worker_file):
    """The zygote, and whether jobs get namespaces: in them where this
    kernel allows (a helper enters them and forks the zygote as their PID 1,
    before the judge has read any job), else a fresh interpreter beside the
    judge. Returns (socket, nested, why)."""
    mine, theirs = socket.socketpair()
    helper = os.fork()
    if helper == 0:
        mine.close()
        try:
            _enter_worker_namespaces()
        except BaseException as e:
            theirs.sendall(b"F")
            _send_frame(theirs, ("%s: %s" % _exc(e)).encode())
            os._exit(0)
        if os.fork() == 0:
            try:
                zygote_main(theirs, True, "")
            finally:
                os._exit(0)
        os._exit(0)
    theirs.close()
    os.waitpid(helper, 0)
    try:
        mine.setblocking(True)
        first = _recv_exact(mine, 1)
        if first == b"F":
            why = _recv_frame(mine).decode()
            mine.close()
            return start_flat_zygote(worker_file) + (why,)
        hello = json.loads(_recv_frame_rest(mine, first))
    except (OSError, EOFError) as e:
        raise Infra("the zygote did not start (%s: %s)" % _exc(e))
    return mine, hello["nested"], hello["why"]


def _recv_frame_rest(sock, first):
    """A frame whose first byte was already read."""
    head = first + _recv_exact(sock, 7)
    (n,) = struct.unpack("<Q", head)
    return _recv_exact(sock, n)


def start_flat_zygote(worker_file):
    """A zygote without namespaces: a fresh interpreter (exec'd, so it holds
    nothing of the judge's memory). Returns (socket, nested)."""
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        mine.close()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.set_inheritable(theirs.fileno(), True)
        os.execv(sys.executable, [sys.executable, "-s", "-S", "-B", worker_file,
                                  "zygote", str(theirs.fileno())])
    theirs.close()
    hello = json.loads(_recv_frame(mine))
    return mine, hello["nested"]


# ---- the judge: talks to tw, keeps expected values, compares ----------------

class Infra(Exception):
    """The sandbox itself failed on a job: never a verdict on the program."""


_NO_EXPECTATION = object()


def _expected(test):
    """A test's expected output: tagged-JSON text (parsed here once per kept
    suite, the value kept beside the text for the suite's next samples;
    comparators never change it), plain JSON or a Python literal."""
    if "expected_text" in test:
        exp = test.get("_expected")
        if exp is None:
            exp = test["_expected"] = (decode(json.loads(test["expected_text"])),)
        return exp[0]
    if "expected_json" in test:
        return test["expected_json"]
    if "expected_literal" in test:
        return ast.literal_eval(test["expected_literal"])
    return _NO_EXPECTATION


def _finish(rep, test, job):
    """Turn a program's raw report into a verdict, comparing outputs here."""
    try:
        exp, exp_error = _expected(test), None
    except BaseException as e:
        exp, exp_error = _NO_EXPECTATION, e
    if job.get("trace") and job["mode"] == "function" and exp is not _NO_EXPECTATION:
        rep["expected"] = encode(exp)
    out = _NO_EXPECTATION
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
    if job["mode"] == "function" and "output" in rep and (
            rep["verdict"] != "pass" or job.get("repr_passing_outputs", True)):
        try:
            rep["output_repr"] = short_repr(decode(rep["output"]) if out is _NO_EXPECTATION else out)
        except BaseException:
            rep["output_repr"] = "<undecodable>"
        if not job.get("keep_output_values", True):
            rep.pop("output", None)
    return rep


REPORT_KEYS = ("verdict", "exc_type", "exc_message", "output", "input", "input_after",
               "duration", "line", "trace", "globals", "args_after")
PROGRAM_VERDICTS = ("ok", "runtime_error", "timeout", "memory", "syntax_error", "output_limit")


class Violation(Exception):
    """The program broke the report protocol."""


class Channel:
    """One job's channels: the program's reports, in order, and the zygote's
    word on how the program ended. The judge enforces the backstop: at it,
    it has the zygote kill the program."""

    def __init__(self, report_r, zygote, request_w, nonce, backstop, nested):
        self.report_r, self.zygote, self.request_w = report_r, zygote, request_w
        self.nonce = nonce
        self.nested = nested
        self.pending = bytearray()
        self.scanned = 0  # `pending` has no newline before this offset
        self.eof = False
        self.exit = None  # (wait status, reason) once the zygote says so
        self.kill_reason = None
        # Every test reported: the program ends on its own.
        self.complete = False
        self.backstop_at = time.monotonic() + backstop
        self.deadline = self.backstop_at + RUNNER_GRACE

    def close(self):
        for f in (self.report_r, self.request_w):
            if f is not None:
                try:
                    os.close(f)
                except OSError:
                    pass

    def stop(self, reason="stopped"):
        """Have the zygote kill the program (once)."""
        if self.kill_reason is None and self.exit is None:
            self.kill_reason = reason
            try:
                self.zygote.sendall(b"K")
            except OSError:
                pass

    def finish(self):
        """Take the zygote's word on how the program ended, so the next job
        starts in step; a program that does not end on its own after its
        last report (it ends at once) is stopped."""
        soon = time.monotonic() + 0.5
        while self.exit is None and self.kill_reason is None:
            if time.monotonic() >= soon:
                self.stop()
                break
            self._pump(soon - time.monotonic(), reports=False)
        while self.exit is None:
            if time.monotonic() >= self.deadline:
                raise Infra("the zygote did not end the program")
            self._pump(self.deadline - time.monotonic(), reports=False)

    def _pump(self, timeout, reports=True):
        """Read what is available (waiting up to `timeout`)."""
        watch = ([self.report_r] if reports and not self.eof else []) + \
            ([] if self.exit else [self.zygote])
        if not watch:
            return
        ready, _, _ = select.select(watch, [], [], max(timeout, 0))
        if self.report_r in ready:
            data = os.read(self.report_r, 1 << 16)
            if data:
                self.pending.extend(data)
                if len(self.pending) > MAX_REPORT and self.pending.find(b"\n", self.scanned) < 0:
                    raise Violation("a report of more than %d bytes" % MAX_REPORT)
            else:
                self.eof = True
        if self.zygote in ready:
            try:
                op = _recv_exact(self.zygote, 1)
                if op != b"X":
                    raise Infra("the zygote sent %r instead of an exit status" % op)
                status = json.loads(_recv_frame(self.zygote))["status"]
            except (EOFError, OSError, ValueError, KeyError):
                if self.nested:
                    raise Infra("the zygote died while it watched the program")
                # Without job namespaces a program can kill the zygote
                # (kill(-1)): that is the program's doing.
                raise ZygoteLost()
            reason = self.kill_reason or "done"
            if reason == "backstop" and not (os.WIFSIGNALED(status)
                                             and os.WTERMSIG(status) == signal.SIGKILL):
                reason = "done"
            self.exit = (status, reason)

    def next_frame(self, until=None):
        """The next report frame, or None once the program has ended and
        nothing more can come. Raises Violation for anything malformed."""
        while True:
            # Only what arrived since the last look: a large report comes in
            # many reads, and scanning it whole after each was quadratic.
            nl = self.pending.find(b"\n", self.scanned)
            if nl < 0:
                self.scanned = len(self.pending)
            else:
                line = bytes(self.pending[:nl])
                del self.pending[:nl + 1]
                self.scanned = 0
                try:
                    frame = json.loads(line)
                except ValueError:
                    raise Violation("an unreadable report")
                if not isinstance(frame, dict) or frame.get("nonce") != self.nonce:
                    raise Violation("a report without this job's nonce")
                frame.pop("nonce")
                if frame.get("verdict") not in PROGRAM_VERDICTS + ("ready",):
                    raise Violation("a report with an unknown verdict")
                return {k: frame[k] for k in ("test",) + REPORT_KEYS if k in frame}
            if self.eof and self.exit:
                if self.pending:
                    raise Violation("an unfinished report")
                return None
            now = time.monotonic()
            if now >= self.backstop_at:
                self.stop("backstop")
            if now >= self.deadline:
                raise Infra("the zygote did not end the program at its backstop")
            if until is not None and now >= until:
                return TimeoutError
            horizon = self.backstop_at if self.kill_reason is None else self.deadline
            wait = horizon - now if until is None else min(until, horizon) - now
            self._pump(wait)
            if self.exit and not self.eof:
                # The program's processes are dead: its end of the channel
                # closes momentarily. Without a PID namespace a stray may
                # hold it open, so stop waiting soon.
                self.deadline = min(self.deadline, time.monotonic() + 2.0)


class ZygoteLost(Exception):
    """A zygote without job namespaces was killed (by a program)."""


class Judge:
    def __init__(self, worker_file):
        self.worker_file = worker_file
        self.suites = {}  # suite id -> tests, the last few tw sent whole
        self.child_tests = {}  # kept suite id -> its inputs as the program reads them (JSON text)
        self.unfinished = None  # the last job's channel, until the zygote reports its end
        self.zygote, self.nested, self.nested_why = start_zygote(worker_file)

    def restart_flat_zygote(self):
        """Replace a zygote a program killed (only without job namespaces)."""
        self.zygote.close()
        _reap_everything(wait=False)
        self.zygote, _ = start_flat_zygote(self.worker_file)

    def launch(self, child_job, tests_text=None):
        """Have the zygote fork the program's process, and hand it its job
        (`tests_text`: its tests, already JSON, spliced in): (report_r,
        request_w)."""
        try:
            self.zygote.sendall(b"S")
            msg, fds, _, _ = socket.recv_fds(self.zygote, 1, 4)
            if msg == b"E":
                raise Infra("the zygote could not fork the program's process: %s"
                            % _recv_frame(self.zygote).decode())
            if msg != b"J" or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                raise Infra("the zygote answered %r with %d descriptors" % (msg, len(fds)))
        except (OSError, EOFError) as e:
            raise Infra("the zygote is gone (%s: %s)" % _exc(e))
        job_w, report_r, request_w = fds
        text = json.dumps(child_job)
        if tests_text is not None:
            text = text[:-1] + ', "tests": ' + tests_text + "}"
        try:
            with os.fdopen(job_w, "wb") as f:
                f.write(text.encode())
        except OSError:
            # The program's process died before it read its job: its report
            # channel says the rest.
            pass
        if child_job["mode"] != "calls":
            os.close(request_w)
            request_w = None
        return report_r, request_w

    def tests_of(self, job):
        suite = job.get("suite")
        if "tests" in job:
            if suite is not None:
                # Re-sent suites move to the back, as in tw's list.
                self.suites.pop(suite, None)
                self.child_tests.pop(suite, None)
                self.suites[suite] = job["tests"]
                while len(self.suites) > 8:
                    oldest = next(iter(self.suites))
                    del self.suites[oldest]
                    self.child_tests.pop(oldest, None)
            return job["tests"]
        if suite not in self.suites:
            raise Infra("tw referred to test suite %r, which this worker does not hold" % (suite,))
        return self.suites[suite]

    def run(self, job):
        tests = self.tests_of(job)
        job["tests"] = tests
        started = time.perf_counter()
        nonce = os.urandom(16).hex()
        backstop = job.get("backstop")
        if backstop is None:
            per_test = [t.get("timeout", job.get("timeout", 3.0)) for t in tests]
            backstop = sum(per_test) + job.get("setup_timeout", 10.0) + 1.0
        child_job = {k: v for k, v in job.items() if k not in ("tests", "check", "suite")}
        child_job["nonce"] = nonce
        child_job["backstop"] = backstop
        tests_text = None
        if job["mode"] == "calls":
            try:
                check_code = compile(job["check"], "<check>", "exec")
            except SyntaxError as e:
                return {"id": job["id"], "wall": 0.0, "results": [{
                    "test": 0, "verdict": "runtime_error", "exc_type": "CheckError",
                    "exc_message": "the benchmark's check does not compile: %s" % e}]}
            # The names the check reads: the program says which it defines.
            child_job["names"] = sorted(_free_names(check_code))
            child_job["setup_timeout"] = job.get("timeout", 3.0)
        else:
            # Inputs only: expected values stay here. A kept suite's inputs
            # are written as JSON once, not once per sample.
            suite = job.get("suite")
            tests_text = self.child_tests.get(suite)
            if tests_text is None:
                tests_text = json.dumps([
                    {k: v for k, v in t.items() if k in ("args", "args_json", "args_literal", "stdin", "timeout")}
                    for t in tests])
                if suite in self.suites:
                    self.child_tests[suite] = tests_text
        if self.unfinished is not None:
            # The last job's program was stopped; take the zygote's word on it.
            unfinished, self.unfinished = self.unfinished, None
            try:
                unfinished.finish()
            except ZygoteLost:
                self.restart_flat_zygote()
        report_r, request_w = self.launch(child_job, tests_text)
        chan = Channel(report_r, self.zygote, request_w, nonce, backstop, self.nested)
        try:
            try:
                if job["mode"] == "calls":
                    results = self.run_calls(job, chan, backstop)
                else:
                    results = self.collect(job, tests, chan, backstop)
                # Every verdict is in: answer tw now, and hear how the program
                # ended (which no verdict needs) before the next job. A
                # program with tests left (stopped early) is stopped now.
                if chan.exit is None and not chan.complete:
                    chan.stop()
                self.unfinished = chan
            finally:
                chan.close()
        except ZygoteLost:
            self.unfinished = None
            self.restart_flat_zygote()
            results = [{"test": i, "verdict": "runtime_error", "exc_type": "Crash",
                        "exc_message": "the program killed the sandbox's zygote (no job namespaces here)"}
                       for i in range(max(len(tests), 1))]
        return {"id": job["id"], "results": results, "wall": time.perf_counter() - started}

    def collect(self, job, tests, chan, backstop):
        n = len(tests)
        stop_early = bool(job.get("stop_at_first_failure"))
        reports = []
        setup = None
        stopped = False
        violation = None
        while True:
            try:
                frame = chan.next_frame()
            except Violation as v:
                violation = str(v)
                chan.stop()
                break
            if frame is None:
                break
            i = frame.get("test")
            if i == -1 and not reports and setup is None and frame.get("verdict") not in ("ok", "ready"):
                # The program could not be set up: that verdict is every test's.
                setup = frame
                continue
            if i != len(reports) or setup is not None or i >= n or frame.get("verdict") == "ready":
                violation = "a report for test %r where test %d was due" % (i, len(reports))
                chan.stop()
                break
            rep = _finish(frame, tests[i], job)
            reports.append(rep)
            if stop_early and rep["verdict"] != "pass":
                stopped = True
                chan.stop()
                break
            if len(reports) == n:
                chan.complete = True
                break
        crash = _crash_of(chan.exit, backstop)
        results = []
        for i in range(n):
            if setup is not None:
                rep = dict(setup)
            elif i < len(reports):
                rep = reports[i]
            elif violation is not None:
                rep = {"verdict": "protocol_violation", "exc_type": "ProtocolViolation",
                       "exc_message": "not graded: the program sent %s" % violation}
            elif stopped:
                rep = {"verdict": "skipped", "exc_type": None,
                       "exc_message": "not run: an earlier test failed"}
            else:
                rep = {"verdict": crash[0], "exc_type": crash[1], "exc_message": crash[2]}
            rep["test"] = i
            results.append(rep)
        return results

    def run_calls(self, job, chan, backstop):
        """Calls mode: the benchmark's check runs here; the program answers
        each call to a name it defines."""
        # One budget for the program's top level and every call, as the
        # check-script harnesses time the whole script.
        self.calls_deadline = time.monotonic() + job.get("timeout", 3.0)
        try:
            frame = chan.next_frame(until=self.calls_deadline + 0.5)
        except Violation as v:
            return [_violation(0, str(v))]
        if frame is TimeoutError:
            return [{"test": 0, "verdict": "timeout", "exc_type": "Timeout",
                     "exc_message": "program setup timed out"}]
        if frame is None:
            c = _crash_of(chan.exit, backstop)
            return [{"test": 0, "verdict": c[0], "exc_type": c[1], "exc_message": c[2]}]
        if frame.get("test") != -1:
            return [_violation(0, "a report before the program was set up")]
        if frame.get("verdict") != "ready":
            frame["test"] = 0
            return [frame]
        program_globals = frame.get("globals")
        if not isinstance(program_globals, dict):
            return [_violation(0, "a setup report without the program's names")]
        check = RemoteCheck(job, chan, program_globals, self.calls_deadline, backstop)
        return [check.run()]


def _violation(test, what):
    return {"test": test, "verdict": "protocol_violation", "exc_type": "ProtocolViolation",
            "exc_message": "not graded: the program sent %s" % what}


def _crash_of(exit_info, backstop):
    if exit_info is None:
        return ("runtime_error", "Crash", "the program ended the process before reporting")
    status, reason = exit_info
    if reason == "backstop":
        return ("timeout", "Timeout", "whole-job time limit of %gs exceeded" % backstop)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXFSZ:
            return ("output_limit", "Crash", "file size limit exceeded")
        if sig == signal.SIGXCPU:
            return ("timeout", "Crash", "CPU time limit exceeded")
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "?"
        return ("runtime_error", "Crash", "killed by signal %d (%s)" % (sig, name))
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        return ("runtime_error", "Crash", "exited with status %d" % os.WEXITSTATUS(status))
    return ("runtime_error", "Crash", "the program ended the process before reporting")


class _CheckTimeout(BaseException):
    pass


class RemoteError(Exception):
    """An exception the program raised; the check sees its type's name."""


class RemoteCheck:
    """Runs a benchmark's check here with the program's names answered by
    the program's process, one call at a time."""

    def __init__(self, job, chan, program_globals, deadline, backstop):
        self.job, self.chan = job, chan
        self.program_globals = program_globals
        self.deadline = deadline
        self.backstop = backstop
        self.calls = 0
        self.failure = None  # the verdict of a call that did not return

    def proxy(self, name):
        def call(*args, **kwargs):
            return self.call({"name": name}, args, kwargs)
        call.__name__ = name
        return call

    def call(self, target, args, kwargs):
        """Call a name the program defines, or a handle, in its process."""
        out = self.request({"op": "call", "target": target,
                            "args": [encode(a) for a in args],
                            "kwargs": [[key, encode(v)] for key, v in kwargs.items()]},
                           args)
        return out

    def request(self, request, args=()):
        """One request to the program's process; its decoded answer."""
        k = self.calls
        self.calls += 1
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _CheckTimeout()
        request["k"] = k
        request["timeout"] = remaining
        try:
            os.write(self.chan.request_w, (json.dumps(request) + "\n").encode())
        except OSError:
            self.failure = self.failure or ("runtime_error", "Crash",
                                            "the program's process stopped taking calls")
            raise _CheckTimeout()
        frame = self.chan.next_frame(until=self.deadline + 0.5)
        if frame is TimeoutError:
            raise _CheckTimeout()
        if frame is None:
            self.failure = _crash_of(self.chan.exit, self.backstop)
            raise _CheckTimeout()
        if frame.get("test") != k:
            raise Violation("a report for call %r where call %d was due" % (frame.get("test"), k))
        verdict = frame.get("verdict")
        if verdict != "ok":
            if verdict in ("timeout", "memory", "output_limit"):
                self.failure = (verdict, frame.get("exc_type"), frame.get("exc_message"))
                raise _CheckTimeout()
            raise _remote_exception(frame.get("exc_type"), frame.get("exc_message"))
        after = frame.get("args_after")
        if isinstance(after, list) and len(after) == len(args):
            for a, new in zip(args, after):
                _update_in_place(a, decode(new))
        return decode(frame.get("output"))

    def namespace(self, code):
        g = {"__name__": "__tw_check__", "__builtins__": builtins}
        for name in sorted(_free_names(code)):
            kind = self.program_globals.get(name)
            if kind is None:
                continue
            if "module" in kind:
                try:
                    g[name] = __import__(kind["module"], fromlist=["_"])
                except BaseException:
                    pass
            elif "callable" in kind:
                g[name] = self.proxy(name)
            elif "value" in kind:
                g[name] = decode(kind["value"])
        return g

    def run(self):
        job = self.job
        started = time.perf_counter()
        rep = {"test": 0}
        try:
            code = compile(job["check"], "<check>", "exec")
        except SyntaxError as e:
            return {"test": 0, "verdict": "runtime_error", "exc_type": "CheckError",
                    "exc_message": "the benchmark's check does not compile: %s" % e}
        g = self.namespace(code)
        _ACTIVE[:] = [self]
        old = signal.signal(signal.SIGALRM, _check_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(self.deadline - time.monotonic(), 0.001) + 0.5)
        try:
            exec(code, g)
            rep["verdict"] = "pass"
        except Violation as v:
            rep = _violation(0, str(v))
        except Infra:
            raise
        except _CheckTimeout:
            v, t, m = self.failure or ("timeout", "Timeout", "the check exceeded %gs" % job.get("timeout", 3.0))
            rep.update(verdict=v, exc_type=t, exc_message=m)
        except RecursionError as e:
            rep.update(verdict="runtime_error", exc_type="RecursionError", exc_message=str(e)[:2000])
        except BaseException as e:
            t, m = _exc(e)
            if isinstance(e, RemoteError):
                t = e.remote_type
            rep.update(verdict="runtime_error", exc_type=t, exc_message=m)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            _ACTIVE[:] = []
            self.chan.complete = True
            try:
                os.write(self.chan.request_w, b'{"end": true}\n')
            except OSError:
                pass
        rep["duration"] = time.perf_counter() - started
        rep["calls"] = self.calls
        return rep


def _check_alarm(signum, frame):
    raise _CheckTimeout()


def _remote_exception(type_name, message):
    """The exception the program raised, as the check would have seen it:
    a built-in type by name, else a RemoteError carrying the name."""
    cls = getattr(builtins, type_name or "", None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not RemoteError:
        try:
            e = cls(message)
        except BaseException:
            e = RemoteError(message)
            e.remote_type = type_name
        return e
    e = RemoteError(message)
    e.remote_type = type_name
    return e


def _update_in_place(arg, new):
    """Mirror an in-place change the program made to a list, dict, set or bytearray argument."""
    try:
        if isinstance(arg, list) and isinstance(new, list) and arg != new:
            arg[:] = new
        elif isinstance(arg, dict) and isinstance(new, dict) and arg != new:
            arg.clear()
            arg.update(new)
        elif isinstance(arg, set) and isinstance(new, (set, frozenset)) and arg != new:
            arg.clear()
            arg.update(new)
        elif isinstance(arg, bytearray) and isinstance(new, (bytes, bytearray)) and arg != new:
            arg[:] = new
    except BaseException:
        pass


def _free_names(code):
    """Global names a compiled check reads, its nested functions included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _free_names(const)
    return names


def judge_main():
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    _prctl(PR_SET_DUMPABLE, 0)
    worker_file = os.path.abspath(__file__)
    judge = Judge(worker_file)
    import gc
    gc.collect()
    gc.freeze()
    reply.write(json.dumps({
        "ready": True, "pid1": os.getpid() == 1, "uid": os.getuid(),
        "job_namespaces": judge.nested, "job_namespaces_why": judge.nested_why,
        "python": sys.version.split()[0]}) + "\n")
    if ROLE == "probe":
        return
    # Test hook (tw's TW_FAILPOINT=sandbox_worker:exit|hang|garbage:N): this
    # worker fails on its N-th job, as a broken sandbox would.
    failpoint = os.environ.get("TW_FAILPOINT", "").split(":")
    jobs_seen = 0
    for line in sys.stdin.buffer:
        line = line.strip()
        if not line:
            continue
        jobs_seen += 1
        if len(failpoint) == 3 and failpoint[0] == "sandbox_worker" and failpoint[2] == str(jobs_seen):
            if failpoint[1] == "exit":
                os._exit(3)
            if failpoint[1] == "hang":
                time.sleep(1e6)
            if failpoint[1] == "garbage":
                reply.write("garbage\n")
                continue
        job = None
        try:
            job = json.loads(line)
            answer = judge.run(job)
        except BaseException as e:
            # The sandbox failed (a zygote that hung or died, a bug here):
            # say so and end; tw starts a fresh worker and retries the job.
            what = str(e) if isinstance(e, Infra) else "the judge failed: %s: %s" % _exc(e)
            answer = {"id": job.get("id") if isinstance(job, dict) else None, "infra": what}
            reply.write(json.dumps(answer) + "\n")
            os._exit(3)
        reply.write(json.dumps(answer) + "\n")
        _reap_everything(wait=False)


if __name__ == "__main__":
    if ROLE == "zygote":
        zygote_main(socket.socket(fileno=int(sys.argv[2])), False, "")
    else:
        judge_main()
