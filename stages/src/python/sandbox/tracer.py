# tw tracer: a line-level tracer for untrusted Python that records
# structured, deterministic, bounded events.
#
# It runs inside the sandbox worker's forked child (tw prepends this file to
# worker.py), and can also run on its own for benchmarks:
#
#     python3 tracer.py program.py --entry f --args '[[3, 5, 1], 2]'
#     python3 tracer.py program.py --stdin input.txt
#
# Events (in execution order, `step` counting from 0; `expanded()` gives them
# as dicts with these names, `summary()` in the compact form tw reads):
#   call       a traced frame starts; `line` is the `def` line (decorators do
#              not shift it), `locals` and `changed` hold the arguments.
#   line       a line is about to run; `changed` and `locals` are filled when
#              the frame's next event arrives, so they describe the state the
#              line left behind (the variables it created or changed, and every
#              visible local afterwards).
#   return     the frame returns `value`, or is left by an exception
#              (`unwound: true`, no value).
#   exception  an exception was raised in, or propagated into, the frame at
#              `line`: `exc_type`, `exc_message`.
# Every event has `depth` (1 = the entry function, or the module of a stdin
# program) and `func` (the code object's qualified name).
#
# Values are `repr`s with memory addresses removed and newlines dropped, cut
# to `max_repr` characters around a middle "..." exactly as PySnooper does, so
# traces are the same on every run and comparable with the original study's.
# Huge lists, tuples and dicts are rendered head-and-tail without building the
# whole repr, so one big value cannot make every step slow.
#
# Bounds: `max_steps` events and about `max_bytes` of event text (the sum of
# names and reprs plus a fixed per-event overhead). At either bound tracing
# switches off completely, the program runs on at native speed, and the trace
# says why it stopped. Frames deeper than `depth` run without line events.

import itertools as _tw_itertools
import operator as _tw_operator
import re as _tw_re
import sys as _tw_sys

_TW_ADDRESS = _tw_re.compile(r" at 0x[0-9a-fA-F]{4,}")
# Immutable types whose repr cannot change while the object lives.
_TW_SCALAR_SET = frozenset((int, float, complex, bool, str, bytes, type(None)))
# Types whose repr is plain text (no newlines, no addresses).
_TW_PLAIN_SET = frozenset((int, float, bool, type(None)))
_TW_EVENT_OVERHEAD = 64
_TW_NOTHING = {}  # shared by every event that changed nothing; never mutated


def _tw_cut(text, limit):
    if limit and len(text) > limit:
        left = (limit - 3) // 2
        right = limit - 3 - left
        return text[:left] + "..." + (text[-right:] if right else "")
    return text


def _tw_long_str(value, limit):
    # repr(value) cut to `limit`, from reprs of its two ends: a long string's
    # quote is chosen from the whole string, escapes are per character.
    if " at 0x" in value or "\n" in value or "\r" in value:
        return None  # cleaning could reach across the cut: use the full repr
    quote = '"' if ("'" in value and '"' not in value) else "'"
    left = (limit - 3) // 2
    right = limit - 3 - left
    head = repr(value[:left + 1])
    tail = repr(value[-(right + 1):])
    if head[0] != quote or tail[0] != quote:
        return None
    return head[:-1][:left] + "..." + (tail[1:][-right:] if right else "")


def _tw_clean(text):
    text = text.replace("\r", "").replace("\n", "")
    if " at 0x" in text:
        text = _TW_ADDRESS.sub("", text)
    return text


class TwTracer:
    """Traces frames of one source file (`filename`) while `run` is active."""

    def __init__(self, filename="<program>", max_steps=10000, max_bytes=4 << 20,
                 max_repr=100, depth=1, record_locals=True, source=None,
                 abort_types=()):
        self.filename = filename
        self.max_steps = max_steps if max_steps and max_steps > 0 else None
        self.max_bytes = max_bytes if max_bytes and max_bytes > 0 else None
        self.max_repr = max_repr if max_repr and max_repr > 0 else None
        self.max_depth = depth if depth and depth > 0 else None
        self.record_locals = record_locals
        self.abort_types = tuple(abort_types)
        self.def_lines = _tw_def_lines(source) if source else {}
        self.events = []
        self.funcs = []
        self.func_index = {}
        self.snapshots = []
        self.bytes = 0
        self.truncated = None
        self.depth_of = {}
        self.frames = {}
        self.active = False
        self.shown_ends = 0
        self.local_trace = self._build_local_trace()

    # -- values ------------------------------------------------------------

    def repr(self, value):
        self.shown_ends = 0
        kind = type(value)
        limit = self.max_repr
        try:
            if kind is int or kind is float or kind is bool or value is None:
                text = repr(value)
                return _tw_cut(text, limit) if limit and len(text) > limit else text
            if limit and (kind is list or kind is tuple or kind is dict) and len(value) > 64:
                return self._head_tail(value, kind, limit)
            if limit and kind is str and len(value) > 2 * limit + 8:
                text = _tw_long_str(value, limit)
                if text is not None:
                    return text
            text = repr(value)
        except BaseException as e:
            if self.abort_types and isinstance(e, self.abort_types):
                raise
            return "REPR FAILED"
        return _tw_cut(_tw_clean(text), limit)

    def _head_tail(self, value, kind, limit):
        # The first and last characters of repr(value), from the reprs of a
        # few items at each end (C speed): identical to cutting the whole repr.
        left = (limit - 3) // 2
        right = limit - 3 - left
        n = len(value)
        k = max(8, left // 3)
        while True:
            if k * 2 >= n:
                return _tw_cut(_tw_clean(repr(value)), limit)
            if kind is dict:
                # Only the 2k items at the ends, not a list of all of them.
                head = _tw_clean(repr(dict(_tw_itertools.islice(value.items(), k))))[:-1]
                last = list(_tw_itertools.islice(reversed(value.items()), k))
                tail = _tw_clean(repr(dict(reversed(last))))[1:]
            else:
                head = _tw_clean(repr(value[:k]))[:-1]
                tail = _tw_clean(repr(value[-k:]))[1:]
            if len(head) >= left and len(tail) >= right:
                # The cut text depends on these k items at each end only.
                self.shown_ends = k
                return head[:left] + "..." + (tail[-right:] if right else "")
            k *= 4

    def _update_locals(self, frame, state, changed, seen):
        cache = state[3]
        deleted = False
        if seen != len(cache):
            # A variable was deleted: forget it.
            skip_dunders = state[6]
            live = {name for name in frame.f_locals
                    if not (skip_dunders and name.startswith("__") and name.endswith("__"))}
            for name in [n for n in cache if n not in live]:
                del cache[name]
            deleted = True
        if not self.record_locals:
            return
        old = state[1]
        if deleted:
            local_reprs = {name: text for name, text in old.items() if name in cache}
            if changed:
                local_reprs.update(changed)
            state[7] = sum(len(k) + len(v) for k, v in local_reprs.items())
        else:
            local_reprs = old.copy()
            size = state[7]
            for name, text in changed.items():
                before = old.get(name)
                size += len(text) - (len(before) if before is not None else -len(name))
            local_reprs.update(changed)
            state[7] = size
        state[1] = local_reprs
        state[8] = -1

    def _snapshot(self, state):
        # Index of the frame's current locals in `snapshots`; events share
        # one snapshot until a variable changes.
        if state[8] < 0:
            state[8] = len(self.snapshots)
            self.snapshots.append(state[1])
            self.bytes += state[7] + 8
        return state[8]

    # -- events ------------------------------------------------------------
    # An event is a list [kind, line, depth, func, changed, snapshot, extra]
    # (kinds: 0 call, 1 line, 2 return, 3 exception, 4 return by exception;
    # `func` indexes `funcs`; `extra` is a return value or [type, message]),
    # cheaper to build and to serialize than a dict; `expanded()` and tw's
    # reader turn them into named fields.

    def _full(self, reason):
        # A bound was reached: stop tracing; None also detaches this frame.
        self.stop(reason)

    def global_trace(self, frame, event, arg):
        if event != "call" or frame.f_code.co_filename != self.filename or self.truncated is not None:
            return None
        parent = frame.f_back
        while parent is not None and parent not in self.depth_of:
            parent = parent.f_back
        depth = self.depth_of[parent] + 1 if parent is not None else 1
        self.depth_of[frame] = depth
        if self.max_depth is not None and depth > self.max_depth:
            frame.f_trace_lines = False
            return self.untraced_frame
        code = frame.f_code
        func = getattr(code, "co_qualname", code.co_name)
        func_index = self.func_index.get(func)
        if func_index is None:
            func_index = self.func_index[func] = len(self.funcs)
            self.funcs.append(func)
        # state: [depth, locals (name -> repr), pending line event, repr cache,
        #         func index, exception seen, skip dunders, size of locals,
        #         snapshot index (-1: not yet stored)]
        state = [depth, {}, None, {}, func_index, False,
                 code.co_name == "<module>" or not code.co_varnames, 0, -1]
        changed = self._changes(frame, state) or {}
        events = self.events
        if self.max_steps is not None and len(events) >= self.max_steps:
            return self._full("max_steps")
        line = self.def_lines.get(code.co_firstlineno, code.co_firstlineno)
        self.bytes += _TW_EVENT_OVERHEAD + sum(len(k) + len(v) for k, v in changed.items())
        snap = self._snapshot(state) if self.record_locals else -1
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            return self._full("max_bytes")
        events.append([0, line, depth, func_index, changed, snap, None])
        self.frames[frame] = state
        return self.local_trace

    def untraced_frame(self, frame, event, arg):
        if event == "return":
            self.depth_of.pop(frame, None)
        return self.untraced_frame

    def _build_local_trace(self):
        # The per-line hot path, as a closure over everything it touches:
        # cell reads are cheaper than attribute reads, and it runs per line.
        tracer = self
        frames = self.frames
        events = self.events
        append = events.append
        record_locals = self.record_locals
        max_steps = self.max_steps if self.max_steps is not None else float("inf")
        limit = self.max_repr
        scalar_types = _TW_SCALAR_SET
        plain_types = _TW_PLAIN_SET
        repr_value = self.repr
        update_locals = self._update_locals
        snapshot = self._snapshot
        full = self._full
        nothing = _TW_NOTHING
        overhead = _TW_EVENT_OVERHEAD
        cut = _tw_cut
        same = _tw_operator.is_
        not_same = _tw_operator.is_not
        compress = _tw_itertools.compress

        def changes(frame, state):
            # Reprs of the frame's locals that are new or changed since its
            # last event (None if none); updates the frame's state.
            cache = state[3]
            changed = None
            seen = 0
            skip_dunders = state[6]
            for name, value in frame.f_locals.items():
                if skip_dunders and name.startswith("__") and name.endswith("__"):
                    continue
                seen += 1
                hit = cache.get(name)
                kind = type(value)
                if hit is not None and hit[0] is value:
                    if kind in scalar_types:
                        continue
                    # A list of immutable scalars whose items are the very
                    # same objects as before has the same repr.
                    flat = hit[2]
                    if flat is not None:
                        if kind is tuple:
                            continue
                        old = flat[0]
                        if len(value) == len(old):
                            if kind is list:
                                ends = flat[1]
                                if ends == 0:
                                    if all(map(same, value, old)):
                                        continue
                                # A long list's cut repr shows `ends` items at each end.
                                elif all(map(same, value[:ends], old[:ends])) and \
                                        all(map(same, value[-ends:], old[-ends:])):
                                    continue
                            elif all(map(same, value, old)) and all(map(same, value.values(), flat[1])):
                                continue
                if kind in plain_types:
                    try:
                        text = repr(value)
                    except ValueError:  # an int beyond the digit limit
                        text = "REPR FAILED"
                    if limit and len(text) > limit:
                        text = cut(text, limit)
                    cache[name] = (value, text, None)
                else:
                    text = repr_value(value)
                    flat = None
                    if kind is list and hit is not None and hit[0] is value and hit[2] is not None \
                            and len(hit[2][0]) == len(value):
                        # Mutated in place: only the items that were replaced need checking.
                        if scalar_types.issuperset(map(type, compress(value, map(not_same, value, hit[2][0])))):
                            flat = (tuple(value), tracer.shown_ends)
                    elif (kind is list or kind is tuple) and len(value) <= 100000 \
                            and scalar_types.issuperset(map(type, value)):
                        flat = (tuple(value), tracer.shown_ends) if kind is list else ()
                    elif kind is dict and len(value) <= 100000 \
                            and scalar_types.issuperset(map(type, value)) \
                            and scalar_types.issuperset(map(type, value.values())):
                        flat = (tuple(value), tuple(value.values()))
                    cache[name] = (value, text, flat)
                if hit is None or hit[1] != text:
                    if changed is None:
                        changed = {name: text}
                    else:
                        changed[name] = text
            if seen != len(cache) or (changed is not None and record_locals):
                update_locals(frame, state, changed, seen)
            return changed

        self._changes = changes

        def local_trace(frame, event, arg):
            state = frames.get(frame)
            if state is None or tracer.truncated is not None:
                return None
            changed = changes(frame, state)
            size = overhead
            pending = state[2]
            if pending is not None:
                # The state this frame's previous line left behind.
                if changed is None:
                    pending[4] = nothing
                else:
                    pending[4] = changed
                    for k, v in changed.items():
                        size += len(k) + len(v)
                if record_locals:
                    pending[5] = snapshot(state)
                state[2] = None
            if len(events) >= max_steps:
                return full("max_steps")
            if event == "line":
                ev = [1, frame.f_lineno, state[0], state[4], None, -1, None]
                state[2] = ev
                state[5] = False
            elif event == "return":
                del frames[frame]
                tracer.depth_of.pop(frame, None)
                snap = snapshot(state) if record_locals else -1
                if state[5] and _tw_left_by_exception(frame):
                    ev = [4, frame.f_lineno, state[0], state[4], None, snap, None]
                else:
                    value = repr_value(arg)
                    size += len(value)
                    ev = [2, frame.f_lineno, state[0], state[4], None, snap, value]
            elif event == "exception":
                kind, exc = arg[0], arg[1]
                if tracer.abort_types and issubclass(kind, tracer.abort_types):
                    return full(getattr(kind, "trace_reason", "aborted"))
                try:
                    message = str(exc)
                except BaseException:
                    message = "<unprintable>"
                message = cut(_tw_clean(message), max(limit or 0, 200))
                ev = [3, frame.f_lineno, state[0], state[4], None, -1, [kind.__name__, message]]
                state[5] = True
                size += len(message)
            else:
                return local_trace
            tracer.bytes += size
            if tracer.max_bytes is not None and tracer.bytes > tracer.max_bytes:
                if state[2] is ev:
                    state[2] = None
                return full("max_bytes")
            append(ev)
            return local_trace if event != "return" else None

        return local_trace

    # -- control -----------------------------------------------------------

    def start(self):
        self.active = True
        _tw_sys.settrace(self.global_trace)

    def stop(self, reason=None):
        if reason is not None and self.truncated is None:
            self.truncated = reason
        _tw_sys.settrace(None)
        for frame, state in list(self.frames.items()):
            pending = state[2]
            if pending is not None:
                # Tracing ends mid-line: give the line the state it has now.
                try:
                    pending[4] = self._changes(frame, state) or _TW_NOTHING
                except BaseException:
                    pending[4] = _TW_NOTHING
                if self.record_locals:
                    pending[5] = self._snapshot(state)
                state[2] = None
            frame.f_trace = None
        self.frames.clear()
        self.depth_of.clear()
        self.active = False

    def run(self, fn, *args):
        """Call `fn(*args)` under the tracer; returns its result or raises."""
        self.start()
        try:
            return fn(*args)
        finally:
            self.stop()

    def summary(self):
        """The trace in its compact form (what the sandbox sends to tw)."""
        return {"funcs": self.funcs, "snapshots": self.snapshots, "events": self.events,
                "truncated": self.truncated}

    def expanded(self):
        """The trace with named fields, one dict per event."""
        kinds = ("call", "line", "return", "exception", "return")
        out = []
        for step, (kind, line, depth, func, changed, snap, extra) in enumerate(self.events):
            ev = {"step": step, "kind": kinds[kind], "line": line, "depth": depth,
                  "func": self.funcs[func]}
            if changed is not None:
                ev["changed"] = changed
            if snap >= 0:
                ev["locals"] = self.snapshots[snap]
            if kind == 2:
                ev["value"] = extra
            elif kind == 4:
                ev["unwound"] = True
            elif kind == 3:
                ev["exc_type"], ev["exc_message"] = extra
            out.append(ev)
        return {"events": out, "truncated": self.truncated}


_TW_RETURN_OPS = None


def _tw_left_by_exception(frame):
    # A frame left by an exception gets a `return` event whose last
    # instruction is not a return or yield (PySnooper's rule).
    global _TW_RETURN_OPS
    if _TW_RETURN_OPS is None:
        import dis
        _TW_RETURN_OPS = {dis.opmap[name] for name in
                          ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE")
                          if name in dis.opmap}
    code = frame.f_code.co_code
    lasti = frame.f_lasti
    return not (0 <= lasti < len(code) and code[lasti] in _TW_RETURN_OPS)


def _tw_def_lines(source):
    # Decorated functions and classes start (co_firstlineno) at their first
    # decorator; users read the `def` line as the function's line.
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    lines = {}
    for node in ast.walk(tree):
        decorators = getattr(node, "decorator_list", None)
        if decorators:
            lines[min(d.lineno for d in decorators)] = node.lineno
    return lines


def _tw_main(argv):
    import argparse
    import io
    import json
    import os
    parser = argparse.ArgumentParser(description="Trace a Python program (tw's tracer).")
    parser.add_argument("program")
    parser.add_argument("--entry", help="function to call (function mode)")
    parser.add_argument("--args", default="[]", help="JSON list of arguments")
    parser.add_argument("--stdin", help="file fed to a stdin program")
    parser.add_argument("--max-steps", type=int, default=10000)
    parser.add_argument("--max-bytes", type=int, default=4 << 20)
    parser.add_argument("--max-repr", type=int, default=100)
    parser.add_argument("--depth", type=int)
    opts = parser.parse_args(argv)
    with open(opts.program, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "<program>", "exec")
    depth = opts.depth if opts.depth is not None else (1 if opts.entry else 2)
    tracer = TwTracer(max_steps=opts.max_steps, max_bytes=opts.max_bytes,
                      max_repr=opts.max_repr, depth=depth, source=source)
    g = {"__name__": "__main__" if not opts.entry else "__tw_program__"}
    status = "ok"
    saved = _tw_sys.stdout
    try:
        if opts.entry:
            exec(code, g)
            tracer.run(g[opts.entry], *json.loads(opts.args))
        else:
            data = open(opts.stdin, encoding="utf-8").read() if opts.stdin else ""
            _tw_sys.stdin = io.StringIO(data)
            _tw_sys.stdout = io.StringIO()
            tracer.run(exec, code, g)
    except BaseException as e:
        status = "%s: %s" % (type(e).__name__, e)
    finally:
        _tw_sys.stdout = saved
    out = tracer.expanded()
    out["status"] = status
    json.dump(out, _tw_sys.stdout)
    _tw_sys.stdout.write(os.linesep)


# Run on its own, not as the head of the sandbox worker (which sets `_TW_EMBEDDED`).
if __name__ == "__main__" and not globals().get("_TW_EMBEDDED"):
    _tw_main(_tw_sys.argv[1:])
