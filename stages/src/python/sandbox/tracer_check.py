# Property checks of tracer.py's shortcuts, run by `cargo test` (sandbox
# tests): every cut repr equals cutting the full repr, and the values the
# tracer reports for a list mutated in place equal a naive full-repr replay.
import random
import sys

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
    got, last = [], None
    for e in t.expanded()["events"]:
        shown = (e.get("locals") or {}).get("xs")
        if shown is not None and shown != last:
            got.append(shown)
            last = shown
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
print("ok")
