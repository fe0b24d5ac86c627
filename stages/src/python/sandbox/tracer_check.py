# Property checks of tracer.py's shortcuts, run by `cargo test` (sandbox
# tests): every cut repr equals cutting the full repr; the items a container's
# cut repr shows at its ends decide it, whatever the items between become;
# the values the tracer reports for a list and a dict changed in place equal
# a naive full-repr replay; and on programs written to trip the still-line
# shortcut (aliases, defaultdicts, lazy maps, shadowed builtins, context
# managers, generators, deletions), every event equals both the tracer with
# its shortcuts off and a naive tracer that reprs every local at every event.
import random
import sys
import textwrap

sys.path.insert(0, sys.argv[1])
import tracer  # noqa: E402

random.seed(7)
items = [lambda: random.randint(-10 ** random.randint(0, 30), 10 ** 6), lambda: "ab'c" * random.randint(0, 5),
         lambda: None, lambda: 1.5, lambda: (1, 2), lambda: "x\ny", lambda: -0.0, lambda: True]
for limit in (7, 10, 11, 40, 100, 101):
    t = tracer.TwTracer(max_repr=limit)
    for _ in range(600):
        n = random.choice([65, 70, 200, 1000])
        kind = random.choice([list, tuple, dict, str])
        if kind is str:
            v = "".join(random.choice("ab'\"\\\t\x00é€ xyz") for _ in range(n * 3))
        else:
            elems = [random.choice(items)() for _ in range(n)]
            v = kind(elems) if kind is not dict else {i: e for i, e in enumerate(elems)}
        want = tracer._tw_cut(tracer._tw_clean(repr(v)), limit)
        assert t.repr(v) == want, (limit, kind, t.repr(v), want)


def shown_values(t, name):
    # The successive values a trace shows for local `name` (repeats dropped).
    got = []
    for e in t.expanded()["events"]:
        shown = (e.get("locals") or {}).get(name)
        if shown is not None and (not got or shown != got[-1]):
            got.append(shown)
    return got


SOURCE = """
def run(ops, n):
    xs = list(range(n))
    for op, i, v in ops:
        if op == 0:
            xs[i] = v
        elif op == 1:
            xs[i], xs[-1 - i] = xs[-1 - i], xs[i]
        elif op == 2:
            xs.append(v)
        else:
            xs[i] = [v]
    return len(xs)
"""
g = {}
exec(compile(SOURCE, "<program>", "exec"), g)
for trial in range(200):
    n = random.choice([10, 70, 200])
    ops = [(random.choice([0, 0, 1, 2, 3]), random.randrange(n),
            random.choice([1, 1.0, True, "s", None, 7, -0.0, 0.0])) for _ in range(60)]
    t = tracer.TwTracer(max_steps=0, max_bytes=0, max_repr=random.choice([20, 100]))
    t.run(g["run"], ops, n)
    got = shown_values(t, "xs")
    xs = list(range(n))
    want = [tracer._tw_cut(repr(xs), t.max_repr)]
    for op, i, v in ops:
        if op == 0:
            xs[i] = v
        elif op == 1:
            xs[i], xs[-1 - i] = xs[-1 - i], xs[i]
        elif op == 2:
            xs.append(v)
        else:
            xs[i] = [v]
        text = tracer._tw_cut(tracer._tw_clean(repr(xs)), t.max_repr)
        if text != want[-1]:
            want.append(text)
    assert got == want, (trial, got, want)

class Blank:
    # A value whose repr is empty: the least a changed middle item can show.
    def __repr__(self):
        return ""


# A container whose cut repr shows only its ends (`_tw_shown_items`): items
# between them may become anything without changing it.
middles = [lambda: 10 ** 40, lambda: "", lambda: "a, b, c", lambda: "x at 0x1234abcd", lambda: Blank(),
           lambda: [1, 2], lambda: "\n" * 30, lambda: 0.0, lambda: None]
for limit in (7, 20, 40, 100, 101):
    for _ in range(400):
        n = random.randint(2, 64)
        kind = random.choice([list, tuple, dict])
        short = random.random() < 0.3  # one-character items: the tightest fit
        elems = [random.randint(0, 9) if short else random.choice(items + middles)() for _ in range(n)]
        v = kind(elems) if kind is not dict else {random.choice([i, str(i), "k, %d" % i]): e for i, e in enumerate(elems)}
        t = tracer.TwTracer(max_repr=limit)
        before = t.repr(v)
        assert before == tracer._tw_cut(tracer._tw_clean(repr(v)), limit), (limit, v)
        ends = t.shown_ends
        if not ends:
            continue
        assert 2 * ends < len(v)
        # Every middle item replaced: at random, or all by the shortest repr.
        shortest = random.random() < 0.5
        for i in range(ends, len(v) - ends):
            if kind is dict:
                v[list(v)[i]] = Blank() if shortest else random.choice(middles)()
            else:
                elems[i] = Blank() if shortest else random.choice(middles)()
        after = v if kind is dict else kind(elems)
        assert tracer._tw_cut(tracer._tw_clean(repr(after)), limit) == before, (limit, before, after)

# The tightest fits, every one: equal short items, the middle made empty.
for limit in range(7, 60):
    for n in range(2, 40):
        for width in (1, 2, 3):
            xs = [10 ** (width - 1)] * n
            t = tracer.TwTracer(max_repr=limit)
            before = t.repr(xs)
            ends = t.shown_ends
            if ends:
                ys = xs[:ends] + [Blank()] * (n - 2 * ends) + xs[n - ends:]
                assert tracer._tw_cut(tracer._tw_clean(repr(ys)), limit) == before, (limit, n, width)

# Dicts changed in place (values replaced at the ends or in the middle, keys
# added and removed, lists in them grown): the values the tracer reports
# equal a naive replay of the same operations.
DICT_OPS = """
if op == 0:
    d[k] = v
elif op == 1:
    d[k] = d.get(k, v)
elif op == 2:
    d.pop(k, None)
elif op == 3:
    d[k] = [v]
elif op == 4:
    d[k] = d[k] + 1 if type(d.get(k)) is int else 0
elif op == 6:
    d[k].append(v) if type(d.get(k)) is list else d.pop(k, None)
else:
    d[-k - 1] = v
"""
ops_body = textwrap.indent(DICT_OPS.strip("\n"), " " * 8)
g = {}
exec(compile("def run(ops, start):\n    d = dict(start)\n    for op, k, v in ops:\n" + ops_body
             + "\n    return len(d)\n", "<program>", "exec"), g)
exec("def replay(ops, start, shown):\n    d = dict(start)\n    want = [shown(d)]\n    for op, k, v in ops:\n"
     + ops_body + "\n        if shown(d) != want[-1]:\n            want.append(shown(d))\n    return want\n", g)
for trial in range(400):
    n = random.choice([3, 12, 26, 70])
    # Lopsided: short values at one end, long at the other, so that either
    # end may be the one that decides how many items the cut repr shows.
    short_head = random.random() < 0.5
    start = {k: (k % 10 if (k < n // 2) == short_head else 10 ** random.randint(5, 12) + k) for k in range(n)}
    ops = [(random.choice([0, 0, 1, 4, 4, 4, 2, 3, 5, 6, 6]), random.randrange(n),
            random.choice([1, 1.0, True, "s", None, 7, -0.0, 0.0, "a, b", 10 ** 30, "p at 0xdeadbeef", 0, 3]))
           for _ in range(60)]
    t = tracer.TwTracer(max_steps=0, max_bytes=0, max_repr=random.choice([20, 60, 100]))
    t.run(g["run"], ops, start)
    got = shown_values(t, "d")
    want = g["replay"](ops, start, lambda d: tracer._tw_cut(tracer._tw_clean(repr(d)), t.max_repr))
    assert got == want, (trial, got, want)

TRICKY = [
    # (name, source, entry or None for a module-level program)
    ("aliases", """
def main():
    a = [1, 2]
    b = a
    c = [a, 5]
    b.append(3)
    n = 0
    n += 1
    a += [4]
    x = a[0]
    return c
""", "main"),
    ("defaultdict", """
from collections import defaultdict, Counter
def main():
    d = defaultdict(list)
    k = 3
    x = d[k]
    y = d[4]
    c = Counter()
    z = c[1]
    if k in d:
        k = 5
    return len(d)
""", "main"),
    ("lazy_maps", """
def main():
    acc = []
    it = map(acc.append, [1, 2, 3])
    for _ in it:
        pass
    it2 = map(acc.append, [4, 5])
    found = 9 in it2
    xs = list(range(3))
    for v in xs:
        w = v * 2
    return acc
""", "main"),
    ("shadowed_builtins", """
def main():
    acc = []
    total = 0
    for i in range(3):
        total += i
    range = acc.append
    range(7)
    len = acc.append
    n = len(5)
    return acc
""", "main"),
    ("context_and_exceptions", """
import threading
def main():
    lock = threading.Lock()
    out = []
    with lock:
        held = 1
    try:
        v = [1][5]
    except IndexError as e:
        msg = 2
    m = msg
    del m
    m = 3
    try:
        q = undefined_name
    except NameError:
        pass
    return out
""", "main"),
    ("generators", """
def gen(xs):
    total = 0
    for x in xs:
        total += x
        yield total
    items = [total]
    yield items
def main():
    got = []
    for v in gen([1, 2, 3]):
        got.append(v)
    g = gen([4])
    first = next(g)
    return got
""", "main"),
    ("closures_and_walrus", """
def main():
    count = 0
    seen = []
    def bump():
        nonlocal count
        count += 1
        seen.append(count)
    bump()
    y = count
    if (z := y + 1) > 1:
        w = z
    f = lambda q=y: q + 1
    r = f()
    a = 1; b = a + 1
    total = (a +
             b +
             y)
    return total
""", "main"),
    ("user_objects", """
LOG = []
class Box:
    def __init__(self, v):
        self.v = v
    def __repr__(self):
        return 'Box(%r)' % (self.v,)
    def __eq__(self, other):
        LOG.append(1)
        return isinstance(other, Box) and other.v == self.v
    def __hash__(self):
        return 1
def main():
    log = LOG
    b = Box(1)
    c = Box(1)
    same = b == c
    d = {b: 1}
    again = c in d
    b.v = 2
    lst = [b]
    b.v = 3
    return log
""", "main"),
    ("containers", """
def main(n):
    xs = list(range(n))
    ys = xs
    for i in range(n):
        if xs[i] % 7 == 0:
            xs[i] = -xs[i]
    d = {i: i for i in range(n)}
    for k in range(0, n, 9):
        d[k] = None
    s = set(xs[:5])
    t = tuple(xs)
    s.add(99)
    return len(t)
""", "main"),
    ("module_program", """
import sys
total = 0
items = []
def add(v):
    global total
    total += v
    items.append(v)
for i in range(5):
    add(i)
    j = i * 2
range = items.append
range(9)
del j
__all__ = ['x']
class K:
    a = 1
    b = a + 1
    c = [a, b]
res = sorted(items)
""", None),
]


def reference(source, entry, args):
    # A tracer that reprs every visible local at every event of the
    # program's frames: the state a line left behind is what the frame's next
    # event sees. (No shortcuts, no bounds.)
    full = lambda v: tracer._tw_cut(tracer._tw_clean(repr(v)), 100)

    def reprs(frame):
        skip = frame.f_code.co_name == "<module>" or not frame.f_code.co_varnames
        out = {}
        for name, value in frame.f_locals.items():
            if skip and name.startswith("__") and name.endswith("__"):
                continue
            try:
                out[name] = full(value)
            except BaseException:
                out[name] = "REPR FAILED"
        return out

    events, frames, depth_of = [], {}, {}

    def settle(frame):
        # The frame's state now: ends its pending line, or changes no line made.
        st = frames[frame]
        now = reprs(frame)
        if st["pending"] is not None:
            ev = st["pending"]
            ev["changed"] = {k: v for k, v in now.items() if st["last"].get(k) != v}
            ev["locals"] = dict(now)
            st["pending"] = None
        st["last"] = now
        return now

    def local(frame, event, arg):
        if frame not in frames:
            return None
        st = frames[frame]
        now = settle(frame)
        base = {"kind": event, "line": frame.f_lineno, "depth": depth_of[frame],
                "func": frame.f_code.co_qualname}
        if event == "line":
            st["pending"] = base
            st["exc"] = False
        elif event == "return":
            if st["exc"] and tracer._tw_left_by_exception(frame):
                base.update(unwound=True, locals=dict(now))
            else:
                base.update(value=full(arg), locals=dict(now))
            del frames[frame]
            del depth_of[frame]  # no reference left: a generator it holds closes now
        elif event == "exception":
            try:
                message = str(arg[1])
            except BaseException:
                message = "<unprintable>"
            base.update(exc_type=arg[0].__name__,
                        exc_message=tracer._tw_cut(tracer._tw_clean(message), 200))
            st["exc"] = True
        else:
            return local
        events.append(base)
        return local if event != "return" else None

    def global_(frame, event, arg):
        if event != "call" or frame.f_code.co_filename != "<program>":
            return None
        parent = frame.f_back
        while parent is not None and parent not in depth_of:
            parent = parent.f_back
        depth_of[frame] = depth_of[parent] + 1 if parent is not None else 1
        now = reprs(frame)
        frames[frame] = {"pending": None, "last": now, "exc": False}
        events.append({"kind": "call", "line": frame.f_code.co_firstlineno, "depth": depth_of[frame],
                       "func": frame.f_code.co_qualname, "changed": dict(now), "locals": dict(now)})
        return local

    g = {"__name__": "__tw_program__"}
    code = compile(source, "<program>", "exec")
    if entry:
        exec(code, g)
    sys.settrace(global_)
    try:
        if entry:
            g[entry](*args)
        else:
            exec(code, g)
    except BaseException:
        pass
    finally:
        sys.settrace(None)
    return events


def traced(source, entry, args, shortcuts):
    t = tracer.TwTracer(max_steps=0, max_bytes=0, max_repr=100, depth=0, source=source,
                        shortcuts=shortcuts)
    g = {"__name__": "__tw_program__"}
    code = compile(source, "<program>", "exec")
    try:
        if entry:
            exec(code, g)
            t.run(g[entry], *args)
        else:
            t.run(exec, code, g)
    except BaseException:
        pass
    out = t.expanded()["events"]
    for ev in out:
        del ev["step"]
    return out


for name, source, entry in TRICKY:
    args = (40,) if name == "containers" else ()
    fast = traced(source, entry, args, True)
    slow = traced(source, entry, args, False)
    want = reference(source, entry, args)
    # Scopes with `with` / `try` have no still lines by design; every other
    # program must have some, or the check would prove nothing.
    assert bool(tracer._tw_still_lines(source)) is (name != "context_and_exceptions"), name
    for label, got in (("shortcuts off", slow), ("naive", want)):
        for i, (a, b) in enumerate(zip(fast, got)):
            assert a == b, (name, label, i, a, b)
        assert len(fast) == len(got), (name, label, len(fast), len(got))
print("ok")
