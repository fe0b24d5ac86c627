# tw tracer: a line-level tracer for untrusted Python that records
# structured, deterministic, bounded events.
#
# It runs inside the sandbox worker's forked child (tw prepends this file to
# worker.py), and can also run on its own for benchmarks:
#
#     python3 tracer.py program.py --entry f --args '[[3, 5, 1], 2]'
#     python3 tracer.py program.py --stdin input.txt
#
# Events (one dict each, in execution order, `step` counting from 0):
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

import re as _tw_re
import sys as _tw_sys

_TW_ADDRESS = _tw_re.compile(r" at 0x[0-9a-fA-F]{4,}")
_TW_SCALARS = (int, float, complex, bool, str, bytes, type(None))
_TW_EVENT_OVERHEAD = 64


def _tw_cut(text, limit):
    if limit and len(text) > limit:
        left = (limit - 3) // 2
        right = limit - 3 - left
        return text[:left] + "..." + (text[-right:] if right else "")
    return text


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
        self.bytes = 0
        self.truncated = None
        self.depth_of = {}
        self.frames = {}
        self.active = False

    # -- values ------------------------------------------------------------

    def repr(self, value):
        limit = self.max_repr
        try:
            kind = type(value)
            if limit and kind in (list, tuple, dict) and len(value) * 2 > limit + 8 and len(value) > 64:
                return self._head_tail(value, kind, limit)
            text = repr(value)
        except BaseException as e:
            if self.abort_types and isinstance(e, self.abort_types):
                raise
            return "REPR FAILED"
        return _tw_cut(_tw_clean(text), limit)

    def _head_tail(self, value, kind, limit):
        # The first and last characters of repr(value), computed from a few
        # items at each end: identical to cutting the full repr.
        left = (limit - 3) // 2
        right = limit - 3 - left
        if kind is dict:
            items = list(value.items())
            piece = lambda kv: _tw_clean(repr(kv[0]) + ": " + repr(kv[1]))
            opening, closing = "{", "}"
        else:
            items = value
            piece = lambda v: _tw_clean(repr(v))
            opening, closing = ("[", "]") if kind is list else ("(", ")")
        head = opening
        i = 0
        while len(head) < left and i < len(items):
            head += (", " if i else "") + piece(items[i])
            i += 1
        tail = closing
        j = len(items) - 1
        while len(tail) < right + 2 and j >= i:
            tail = piece(items[j]) + (", " if j < len(items) - 1 else "") + tail
            j -= 1
        if j >= i - 1 and i > 0:
            tail = ", " + tail
        return head[:left] + "..." + (tail[-right:] if right else "")

    def snapshot(self, frame, cache):
        # name -> repr of every visible local; scalar values that are the very
        # same object as at the frame's last event reuse their repr.
        out = {}
        for name, value in frame.f_locals.items():
            if name[:2] == "__" and name[-2:] == "__":
                continue
            hit = cache.get(name)
            if hit is not None and hit[0] is value and type(value) in _TW_SCALARS:
                out[name] = hit[1]
                continue
            text = self.repr(value)
            cache[name] = (value, text)
            out[name] = text
        return out

    # -- events ------------------------------------------------------------

    def _record(self, event, sized):
        if self.truncated is not None:
            return False
        if self.max_steps is not None and len(self.events) >= self.max_steps:
            self.stop("max_steps")
            return False
        self.bytes += sized
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            self.stop("max_bytes")
            return False
        event["step"] = len(self.events)
        self.events.append(event)
        return True

    def _finish_pending(self, state, now):
        pending = state[2]
        if pending is None:
            return
        state[2] = None
        before = state[1]
        changed = {k: v for k, v in now.items() if before.get(k) != v}
        pending["changed"] = changed
        size = sum(len(k) + len(v) for k, v in changed.items())
        if self.record_locals:
            pending["locals"] = now
            size += sum(len(k) + len(v) for k, v in now.items())
        self.bytes += size
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            self.stop("max_bytes")

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
        cache = {}
        now = self.snapshot(frame, cache)
        line = self.def_lines.get(code.co_firstlineno, code.co_firstlineno)
        event_ = {"step": None, "kind": "call", "line": line, "depth": depth, "func": func,
                  "changed": now}
        size = _TW_EVENT_OVERHEAD + len(func) + sum(len(k) + len(v) for k, v in now.items())
        if self.record_locals:
            event_["locals"] = now
            size *= 2
        # state: [depth, last snapshot, pending line event, repr cache, func, had exception]
        self.frames[frame] = [depth, now, None, cache, func, False]
        if not self._record(event_, size):
            return None
        return self.local_trace

    def untraced_frame(self, frame, event, arg):
        if event == "return":
            self.depth_of.pop(frame, None)
        return self.untraced_frame

    def local_trace(self, frame, event, arg):
        state = self.frames.get(frame)
        if state is None or self.truncated is not None:
            return None
        now = self.snapshot(frame, state[3])
        self._finish_pending(state, now)
        state[1] = now
        if self.truncated is not None:
            return None
        if event == "line":
            ev = {"step": None, "kind": "line", "line": frame.f_lineno, "depth": state[0], "func": state[4]}
            if self._record(ev, _TW_EVENT_OVERHEAD):
                state[2] = ev
                state[5] = False
            return self.local_trace
        if event == "return":
            self.frames.pop(frame, None)
            self.depth_of.pop(frame, None)
            ev = {"step": None, "kind": "return", "line": frame.f_lineno, "depth": state[0], "func": state[4]}
            if state[5] and _tw_left_by_exception(frame):
                ev["unwound"] = True
                size = _TW_EVENT_OVERHEAD
            else:
                ev["value"] = value = self.repr(arg)
                size = _TW_EVENT_OVERHEAD + len(value)
            if self.record_locals:
                ev["locals"] = now
            self._record(ev, size)
            return None
        if event == "exception":
            kind, exc = arg[0], arg[1]
            if self.abort_types and issubclass(kind, self.abort_types):
                self.stop(getattr(kind, "trace_reason", "aborted"))
                return None
            try:
                message = str(exc)
            except BaseException:
                message = "<unprintable>"
            message = _tw_cut(_tw_clean(message), max(self.max_repr or 0, 200))
            ev = {"step": None, "kind": "exception", "line": frame.f_lineno, "depth": state[0],
                  "func": state[4], "exc_type": kind.__name__, "exc_message": message}
            state[5] = True
            self._record(ev, _TW_EVENT_OVERHEAD + len(message))
            return self.local_trace
        return self.local_trace

    # -- control -----------------------------------------------------------

    def start(self):
        self.active = True
        _tw_sys.settrace(self.global_trace)

    def stop(self, reason=None):
        if reason is not None and self.truncated is None:
            self.truncated = reason
        _tw_sys.settrace(None)
        for frame, state in list(self.frames.items()):
            if state[2] is not None and reason is not None:
                try:
                    self._finish_pending_quietly(frame, state)
                except BaseException:
                    pass
            frame.f_trace = None
        self.frames.clear()
        self.depth_of.clear()
        self.active = False

    def _finish_pending_quietly(self, frame, state):
        limit, self.max_bytes = self.max_bytes, None
        try:
            self._finish_pending(state, self.snapshot(frame, state[3]))
        finally:
            self.max_bytes = limit

    def run(self, fn, *args):
        """Call `fn(*args)` under the tracer; returns its result or raises."""
        self.start()
        try:
            return fn(*args)
        finally:
            self.stop()

    def summary(self):
        return {"events": self.events, "steps": len(self.events),
                "truncated": self.truncated}


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
    out = tracer.summary()
    out["status"] = status
    json.dump(out, _tw_sys.stdout)
    _tw_sys.stdout.write(os.linesep)


if __name__ == "__main__" and _tw_sys.argv[0] not in ("-c", ""):
    _tw_main(_tw_sys.argv[1:])
