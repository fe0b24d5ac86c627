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

import array as _tw_array
import builtins as _tw_builtins
import itertools as _tw_itertools
import operator as _tw_operator
import re as _tw_re
import sys as _tw_sys

_TW_ADDRESS = _tw_re.compile(r" at 0x[0-9a-fA-F]{4,}")
# Immutable types whose repr cannot change while the object lives.
_TW_SCALAR_SET = frozenset((int, float, complex, bool, str, bytes, type(None)))
# Types whose repr is plain text (no newlines, no addresses).
_TW_PLAIN_SET = frozenset((int, float, bool, type(None)))
# Types whose repr changes only when one of the object's dunder attributes
# (`__qualname__`, `__name__`, `__spec__`) is reassigned: an unchanged object
# keeps its repr.
_TW_UNCHANGING_SET = _TW_SCALAR_SET | frozenset((
    type, type(len), type(_tw_sys), type(lambda: None)))
_TW_EVENT_OVERHEAD = 64
_TW_RESCAN = object()  # `quick` could not tell: look at every local


def _tw_cut(text, limit):
    if limit and len(text) > limit:
        left = (limit - 3) // 2
        right = limit - 3 - left
        return text[:left] + "..." + (text[-right:] if right else "")
    return text


def _tw_long_str(value, limit):
    # repr(value) cut to `limit`, from reprs of its two ends: a long string's
    # quote is chosen from the whole string, escapes are per character.
    if " " in value and " at 0x" in value:  # the first test is a fast memchr
        # Cleaning could reach across the cut: use the full repr. (Line
        # breaks need no look: a string's repr escapes them.)
        return None
    quote = '"' if ("'" in value and '"' not in value) else "'"
    left = (limit - 3) // 2
    right = limit - 3 - left
    head = repr(value[:left + 1])
    tail = repr(value[-(right + 1):])
    if head[0] != quote or tail[0] != quote:
        return None
    # Each holds its quotes and more characters than it shows.
    return head[:left] + "..." + (tail[-right:] if right else "")


def _tw_flat_list(value, ends):
    # A list of scalars as the tracer keeps it: its items, how many at each
    # end its cut repr shows (0: all), and those at the end.
    items = tuple(value)
    return (items, ends, items[-ends:] if ends else None)


def _tw_shown_items(text, n, limit):
    # How many items at each end of a container (n items, cleaned repr
    # `text` longer than `limit`) its cut repr shows, or 0 if those overlap.
    # Every item that starts in the first `left` + 2 characters (or ends in
    # the last `right` + 2) follows (precedes) a ", " there: the count is at
    # least theirs, more only where a string holds ", ". Items beyond are not
    # shown, and with one or more of them between the ends the text stays
    # longer than `limit` whatever they become, so the cut repr depends on
    # these items alone.
    left = (limit - 3) // 2
    right = limit - 3 - left
    if left < 1:
        return 0  # a cut too short to show an item (tw asks for 8 or more)
    ends = max(text.count(", ", 0, left + 2), text.count(", ", len(text) - right - 2)) + 1
    return ends if 2 * ends < n else 0


def _tw_rebuilt_ends(head, tail, shown, limit):
    # The cut repr of a container of scalars whose cut repr `shown` showed
    # `_tw_shown_items` items at each end, after some of those were replaced:
    # `head` and `tail` are the reprs of the items at an end that changed (a
    # container of them alone), None for an end that did not (kept from
    # `shown`). None if a rebuilt end no longer fills its side of the cut
    # (its items got shorter): the whole repr is needed.
    left = (limit - 3) // 2
    right = limit - 3 - left
    if head is None:
        head = shown[:left]
    else:
        head = _tw_clean(head)
        if len(head) - 1 < left:
            return None
        head = head[:left]
    if not right:
        tail = ""
    elif tail is None:
        tail = shown[-right:]
    else:
        tail = _tw_clean(tail)
        if len(tail) - 1 < right:
            return None
        tail = tail[-right:]
    return head + "..." + tail


def _tw_clean(text):
    text = text.replace("\r", "").replace("\n", "")
    if " at 0x" in text:
        text = _TW_ADDRESS.sub("", text)
    return text


# Builtins a still line may call (when not shadowed): they change none of
# their arguments and call none of them back, except through special methods
# (Python code, which `ran` counts). The second set iterates its arguments,
# which must then be containers of the types in `_TW_SAFE_SET`.
_TW_PLAIN_CALLS = frozenset((
    "abs", "bool", "chr", "divmod", "float", "hash", "id", "int", "isinstance",
    "len", "ord", "pow", "range", "repr", "round", "str", "type"))
_TW_ITERATING_CALLS = frozenset((
    "all", "any", "enumerate", "frozenset", "list", "max", "min", "reversed",
    "set", "sorted", "sum", "tuple", "zip"))
# Containers whose reading (index, iterate, `in`) changes nothing: a
# defaultdict's missing key, or a lazy `map`, would.
_TW_SAFE_SET = frozenset((list, tuple, str, bytes, dict, set, frozenset, range))
_TW_CHECK_SAFE, _TW_CHECK_UNCHANGING, _TW_CHECK_BUILTIN = 0, 1, 2
_TW_STILL_CACHE = {}
_TW_REAL_BUILTINS = {name: getattr(_tw_builtins, name) for name in _TW_PLAIN_CALLS | _TW_ITERATING_CALLS}


def _tw_still_lines(source):
    """Lines whose code cannot change any object in place, and what they may
    rebind: {line: (builtins it calls, containers it reads, names it may
    bind, names whose value must be immutable after it)}. After such a line (and no Python code
    run since), the tracer looks only at the names it may rebind and the
    number of locals, not at every local, once the checks hold: a container
    it reads is of a safe type, a builtin it calls is the real one, and an
    augmented assignment left an immutable value (else it may have changed a
    list in place). Scopes with `with`, `try`, `match`, `yield` or `await`
    have no such lines (their hidden exits run code between lines). Assumed,
    as the reason this holds: builtin types' operations change only the
    object they are applied to, and user-defined behaviour is Python code,
    which the tracer sees run."""
    found = _TW_STILL_CACHE.get(source)
    if found is not None:
        return found
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    Name, Tuple, List, Starred, Call = ast.Name, ast.Tuple, ast.List, ast.Starred, ast.Call
    Store, Load = ast.Store, ast.Load
    simple = (ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
              ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Set, ast.Dict,
              ast.JoinedStr, ast.FormattedValue, ast.NamedExpr, ast.Call, ast.Lambda)
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    hidden = (ast.With, ast.AsyncWith, ast.Try, ast.Match, ast.Yield, ast.YieldFrom, ast.Await,
              ast.AsyncFor) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())

    def own_nodes(scope):
        todo = list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, scopes):
                todo.extend(ast.iter_child_nodes(node))

    class Line:
        def __init__(self):
            self.checks, self.names = [], []

        def expr(self, e):
            if e is None:
                return True
            if not isinstance(e, simple):
                return False
            kind = type(e)
            if kind is ast.Constant:
                return True
            if kind is Name:
                if isinstance(e.ctx, Store):
                    self.names.append(e.id)
                    return True
                return isinstance(e.ctx, Load)
            if kind is ast.BinOp:
                return self.expr(e.left) and self.expr(e.right)
            if kind is ast.UnaryOp:
                return self.expr(e.operand)
            if kind is ast.BoolOp:
                return all(self.expr(v) for v in e.values)
            if kind is ast.Compare:
                if not self.expr(e.left):
                    return False
                for op, right in zip(e.ops, e.comparators):
                    if isinstance(op, (ast.In, ast.NotIn)):
                        if not self.iterable(right):
                            return False
                    elif not self.expr(right):
                        return False
                return True
            if kind is ast.IfExp:
                return self.expr(e.test) and self.expr(e.body) and self.expr(e.orelse)
            if kind is ast.Attribute:
                return isinstance(e.ctx, Load) and self.expr(e.value)
            if kind is ast.Subscript:
                if not isinstance(e.ctx, Load) or type(e.value) is not Name:
                    return False
                self.checks.append((e.value.id, _TW_CHECK_SAFE))
                return self.expr(e.slice)
            if kind is ast.Slice:
                return self.expr(e.lower) and self.expr(e.upper) and self.expr(e.step)
            if kind is Tuple or kind is List:
                if isinstance(e.ctx, Store):
                    return all(self.target(t) for t in e.elts)
                return all(self.iterable(t.value) if type(t) is Starred else self.expr(t) for t in e.elts)
            if kind is ast.Set:
                return all(self.iterable(t.value) if type(t) is Starred else self.expr(t) for t in e.elts)
            if kind is ast.Dict:
                return all((self.iterable(v) if k is None else self.expr(k) and self.expr(v))
                           for k, v in zip(e.keys, e.values))
            if kind is ast.JoinedStr:
                return all(self.expr(v) for v in e.values)
            if kind is ast.FormattedValue:
                return self.expr(e.value) and self.expr(e.format_spec)
            if kind is ast.NamedExpr:
                return self.target(e.target) and self.expr(e.value)
            if kind is ast.Lambda:  # made, not run: only its defaults are evaluated
                return all(self.expr(d) for d in e.args.defaults + e.args.kw_defaults if d is not None)
            # A call: of a builtin that changes nothing, with no keywords.
            if type(e.func) is not Name or e.keywords or any(type(a) is Starred for a in e.args):
                return False
            name = e.func.id
            if name in _TW_PLAIN_CALLS:
                self.checks.append((name, _TW_CHECK_BUILTIN))
                return all(self.expr(a) for a in e.args)
            if name in _TW_ITERATING_CALLS:
                self.checks.append((name, _TW_CHECK_BUILTIN))
                if name in ("min", "max") and len(e.args) > 1:
                    return all(self.expr(a) for a in e.args)
                return all(self.iterable(a) for a in e.args)
            return False

        def iterable(self, e):
            # Something iterated (a `for`, `in`, `*`, unpacking, an iterating
            # builtin's argument): only a safe container, or a fresh one.
            kind = type(e)
            if kind is Name and isinstance(e.ctx, Load):
                self.checks.append((e.id, _TW_CHECK_SAFE))
                return True
            if kind is ast.Constant:
                return isinstance(e.value, (str, bytes, tuple))
            if kind in (Tuple, List, ast.Set, ast.Dict):
                return self.expr(e)
            if kind is ast.Subscript and type(e.slice) is ast.Slice:
                return self.expr(e)
            if kind is Call and type(e.func) is Name and e.func.id in (
                    "range", "sorted", "list", "tuple", "set", "frozenset", "reversed", "enumerate", "zip"):
                return self.expr(e)
            return False

        def target(self, t):
            kind = type(t)
            if kind is Name:
                self.names.append(t.id)
                return True
            if kind is Starred:
                return self.target(t.value)
            if kind is Tuple or kind is List:
                return all(self.target(x) for x in t.elts)
            return False  # an item or attribute stored: changes an object

        def stmt(self, s):
            kind = type(s)
            if kind is ast.Assign:
                if any(type(t) in (Tuple, List) for t in s.targets):
                    # Unpacking iterates the value: a safe container, a
                    # fresh one, or divmod's tuple.
                    value = s.value
                    read = self.iterable(value) or (
                        type(value) is Call and type(value.func) is Name
                        and value.func.id == "divmod" and self.expr(value))
                else:
                    read = self.expr(s.value)
                return read and all(self.target(t) for t in s.targets)
            if kind is ast.AugAssign:
                if type(s.target) is not Name:
                    return False
                self.names.append(s.target.id)
                self.checks.append((s.target.id, _TW_CHECK_UNCHANGING))
                return self.expr(s.value)
            if kind is ast.AnnAssign:
                return self.target(s.target) and self.expr(s.value) and self.expr(s.annotation)
            if kind is ast.Expr:
                return self.expr(s.value)
            if kind is ast.Return:
                return self.expr(s.value)
            if kind in (ast.Pass, ast.Break, ast.Continue, ast.Global, ast.Nonlocal):
                return True
            if kind is ast.Assert:
                return self.expr(s.test) and self.expr(s.msg)
            return False

    info, bad = {}, set()

    def mark(first, last, line):
        for n in range(first, last + 1):
            if line is None:
                bad.add(n)
            else:
                got = info.get(n)
                if got is None:
                    info[n] = line
                else:
                    got.checks += line.checks
                    got.names += line.names

    def block(body, still):
        for s in body:
            statement(s, still)

    def statement(s, still):
        kind = type(s)
        if kind in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
            first = min([s.lineno] + [d.lineno for d in s.decorator_list])
            mark(first, max(s.lineno, s.body[0].lineno - 1), None)
            inner = not any(isinstance(n, hidden) for n in own_nodes(s))
            block(s.body, inner)
            return
        if kind in (ast.If, ast.While):
            line = Line()
            mark(s.lineno, s.test.end_lineno, line if still and line.expr(s.test) else None)
            block(s.body, still)
            block(s.orelse, still)
            return
        if kind is ast.For:
            line = Line()
            ok = still and line.target(s.target) and line.iterable(s.iter)
            mark(s.lineno, s.iter.end_lineno, line if ok else None)
            block(s.body, still)
            block(s.orelse, still)
            return
        if hasattr(s, "body") and kind not in (ast.Expr,):
            # with / try / match / async for: their scope is not still anyway.
            mark(s.lineno, s.end_lineno, None)
            return
        line = Line()
        mark(s.lineno, s.end_lineno, line if still and line.stmt(s) else None)

    block(tree.body, not any(isinstance(n, hidden) for n in own_nodes(tree)))
    found = {}
    for n, line in info.items():
        if n not in bad:
            checked = {what: tuple(dict.fromkeys(name for name, kind in line.checks if kind == what))
                       for what in (_TW_CHECK_BUILTIN, _TW_CHECK_SAFE, _TW_CHECK_UNCHANGING)}
            found[n] = (checked[_TW_CHECK_BUILTIN], checked[_TW_CHECK_SAFE], tuple(dict.fromkeys(line.names)),
                        checked[_TW_CHECK_UNCHANGING])
    _TW_STILL_CACHE[source] = found
    return found


class TwTracer:
    """Traces frames of one source file (`filename`) while `run` is active."""

    def __init__(self, filename="<program>", max_steps=10000, max_bytes=4 << 20,
                 max_repr=100, depth=1, record_locals=True, source=None,
                 abort_types=(), shortcuts=True):
        self.filename = filename
        self.source = source
        self.max_steps = max_steps if max_steps and max_steps > 0 else None
        self.max_bytes = max_bytes if max_bytes and max_bytes > 0 else None
        self.max_repr = max_repr if max_repr and max_repr > 0 else None
        self.max_depth = depth if depth and depth > 0 else None
        self.record_locals = record_locals
        self.abort_types = tuple(abort_types)
        self.def_lines = _tw_def_lines(source) if source else {}
        # kind, line, depth, func per event: a flat list (extending an
        # array from a tuple costs four times as much), packed by `summary`.
        self.events = []
        self.changes = []  # step, name, repr (None: deleted), ...
        self.extras = []  # step, return value or [type, message], ...
        self.befores = []  # step, name, repr, ...: changes no line made
        self.funcs = []
        self.func_index = {}
        self.truncated = None
        self.depth_of = {}
        self.frames = {}
        self.active = False
        self.shown_ends = 0
        self._build_hooks(shortcuts)

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
        text = _tw_clean(text)
        if limit and len(text) > limit:
            if kind is list or kind is tuple or kind is dict:
                self.shown_ends = _tw_shown_items(text, len(value), limit)
            return _tw_cut(text, limit)
        return text

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
                head = repr(dict(_tw_itertools.islice(value.items(), k)))
                tail = repr(dict(reversed(list(_tw_itertools.islice(reversed(value.items()), k)))))
            else:
                head, tail = repr(value[:k]), repr(value[-k:])
            text = _tw_rebuilt_ends(head, tail, None, limit)
            if text is not None:
                # The cut text depends on these k items at each end only.
                self.shown_ends = k
                return text
            k *= 4

    # -- events ------------------------------------------------------------
    # An event is four ints in `events` (kind, line, depth, func; kinds: 0
    # call, 1 line, 2 return, 3 exception, 4 return by exception; `func`
    # indexes `funcs`), plus, by step, the names it changed in `changes` (a
    # line's, once its frame's next event shows what it left behind) and a
    # return value or [type, message] in `extras`: no object per event for
    # the garbage collector to walk, and a compact wire form. `summary()` and tw's reader, and `expanded()`, turn them into
    # named fields.
    #
    # Every visible local at each step (`record_locals`) is not sent whole:
    # the reader rebuilds it from the frame's call event and the `changed` of
    # its later events, in which a name the step deleted maps to None, and
    # from `befores`: changes seen at an event that no line made, applied
    # before the event's own. (Sending a full copy per step made the trace of
    # a 20,000-step loop 8 MB and cost more than tracing it.) A frame's locals
    # are shown on its call, line and return events; a line's are the state
    # it left behind.

    def _build_hooks(self, shortcuts):
        # The hooks, as closures over everything they touch: cell reads are
        # cheaper than attribute reads, and `local_trace` runs per line.
        tracer = self
        frames = self.frames
        depth_of = self.depth_of
        record = self.events.extend
        log_change = self.changes.extend
        log_extra = self.extras.extend
        log_before = self.befores.extend
        count = 0  # events recorded
        funcs = self.funcs
        func_index_of = self.func_index
        filename = self.filename
        def_lines = self.def_lines
        record_locals = self.record_locals
        inf = float("inf")
        max_steps = self.max_steps if self.max_steps is not None else inf
        max_bytes = self.max_bytes if self.max_bytes is not None else inf
        max_depth = self.max_depth if self.max_depth is not None else inf
        abort_types = self.abort_types
        limit = self.max_repr
        scalar_types = _TW_SCALAR_SET
        plain_types = _TW_PLAIN_SET
        unchanging = _TW_UNCHANGING_SET
        repr_value = self.repr
        long_str = _tw_long_str
        rebuilt_ends = _tw_rebuilt_ends
        address = _TW_ADDRESS
        overhead = _TW_EVENT_OVERHEAD
        cut = _tw_cut
        clean = _tw_clean
        left_by_exception = _tw_left_by_exception
        same = _tw_operator.is_
        not_same = _tw_operator.is_not
        compress = _tw_itertools.compress
        # Bytes recorded so far: names and reprs, a fixed overhead per event,
        # and each distinct locals snapshot a step shows, counted whole as if
        # sent whole, so `max_bytes` bounds the trace tw expands.
        recorded = 0
        still_lines = _tw_still_lines(self.source) if self.source and shortcuts else {}
        safe_types = _TW_SAFE_SET
        real_builtins = _TW_REAL_BUILTINS
        rescan = _TW_RESCAN
        # Counts calls of Python code (and reprs that may run some) while
        # tracing: a frame's objects can change in place between two of its
        # events only through code of its line, or Python code that ran.
        ran = [0]

        def describe(value, kind, hit, moved=None):
            # The cache entry for a value: (object, repr, flat or None). A
            # container of scalars is flat, its repr known from its items'
            # identities: a list's `_tw_flat_list`, () for a tuple, a dict's
            # (keys, values, items shown at each end (`_tw_shown_items`),
            # reprs of those items or None). `hit` is the name's previous
            # entry (or None); `moved`: where the values of hit's flat dict,
            # its keys the very same objects, were replaced (None: not known).
            if kind in plain_types:
                try:
                    text = repr(value)
                except ValueError:  # an int beyond the digit limit
                    text = "REPR FAILED"
                if limit and len(text) > limit:
                    text = cut(text, limit)
                return (value, text, None)
            if kind is str:
                if limit and len(value) > 2 * limit + 8:
                    text = long_str(value, limit)
                    if text is not None:
                        return (value, text, None)
                text = repr(value)  # never has a line break: escaped
                if " at 0x" in text:
                    text = address.sub("", text)
                return (value, cut(text, limit) if limit and len(text) > limit else text, None)
            if moved:
                # The same keys: only the values that were replaced need
                # checking, and none at all in the middle of a long dict,
                # which its cut repr does not show.
                keys, old_values, ends, items = hit[2]
                values = tuple(value.values())
                if scalar_types.issuperset(map(type, map(values.__getitem__, moved))):
                    if ends:
                        tail_at = len(values) - ends
                        if ends <= moved[0] and moved[-1] < tail_at:
                            return (value, hit[1], (keys, values, ends, items))
                        # The ends rebuilt from the reprs of their items
                        # ("key: value", as a dict's repr has them), kept
                        # from one change to the next: only those replaced
                        # are made again.
                        try:
                            if items is None:
                                head = ["%r: %r" % item for item in zip(keys[:ends], values[:ends])]
                                tail = ["%r: %r" % item for item in zip(keys[tail_at:], values[tail_at:])]
                            else:
                                head, tail = items[0][:], items[1][:]
                                for at in moved:
                                    if at < ends:
                                        head[at] = "%r: %r" % (keys[at], values[at])
                                    elif at >= tail_at:
                                        tail[at - tail_at] = "%r: %r" % (keys[at], values[at])
                        except ValueError:  # an int beyond the digit limit
                            text = None
                        else:
                            text = rebuilt_ends("{" + ", ".join(head) + "}" if moved[0] < ends else None,
                                                "{" + ", ".join(tail) + "}" if moved[-1] >= tail_at else None,
                                                hit[1], limit)
                        if text is not None:
                            return (value, text, (keys, values, ends, (head, tail)))
                    return (value, repr_value(value), (keys, values, tracer.shown_ends, None))
            if kind is list and hit is not None and hit[0] is value and hit[2] is not None \
                    and len(hit[2][0]) == len(value):
                # Mutated in place: only the items that were replaced need
                # checking, and only the ends that changed a new repr.
                old, ends, old_tail = hit[2]
                if scalar_types.issuperset(map(type, compress(value, map(not_same, value, old)))):
                    if ends:
                        try:
                            text = rebuilt_ends(
                                None if all(map(same, value[:ends], old)) else repr(value[:ends]),
                                None if all(map(same, value[-ends:], old_tail)) else repr(value[-ends:]),
                                hit[1], limit)
                        except ValueError:  # an int beyond the digit limit
                            text = None
                        if text is not None:
                            return (value, text, _tw_flat_list(value, ends))
                    text = repr_value(value)
                    return (value, text, _tw_flat_list(value, tracer.shown_ends))
            text = repr_value(value)
            flat = None
            if (kind is list or kind is tuple) and len(value) <= 100000 \
                    and scalar_types.issuperset(map(type, value)):
                flat = _tw_flat_list(value, tracer.shown_ends) if kind is list else ()
            elif kind is dict and len(value) <= 100000 \
                    and scalar_types.issuperset(map(type, value)) \
                    and scalar_types.issuperset(map(type, value.values())):
                flat = (tuple(value), tuple(value.values()), tracer.shown_ends, None)
            elif kind not in unchanging:
                ran[0] += 1  # its repr may have run the program's code
            return (value, text, flat)

        def changes(f_locals, state):
            # Reprs of the frame's locals that are new or changed since its
            # last event (None if none; a deleted name maps to None when
            # locals are recorded), looking at every local; updates the
            # frame's state.
            cache = state[3]
            changed = None
            seen = 0
            skip_dunders = state[5]
            size = state[6]
            for name, value in f_locals.items():
                if skip_dunders and name.startswith("__") and name.endswith("__"):
                    continue
                seen += 1
                hit = cache.get(name)
                kind = type(value)
                moved = None
                if hit is not None and hit[0] is value:
                    if kind in unchanging:
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
                                elif all(map(same, value[:ends], old)) and \
                                        all(map(same, value[-ends:], flat[2])):
                                    continue
                            elif all(map(same, value, old)):
                                moved = list(compress(range(len(old)), map(not_same, value.values(), flat[1])))
                                if not moved:
                                    continue
                entry = cache[name] = describe(value, kind, hit, moved)
                text = entry[1]
                if hit is None:
                    size += len(name) + len(text)
                elif hit[1] != text:
                    size += len(text) - len(hit[1])
                else:
                    continue
                if changed is None:
                    changed = {name: text}
                else:
                    changed[name] = text
            if seen != len(cache):
                # A variable was deleted: forget it.
                for name in [n for n in cache if n not in f_locals]:
                    size -= len(name) + len(cache.pop(name)[1])
                    if record_locals:
                        if changed is None:
                            changed = {name: None}
                        else:
                            changed[name] = None
                state[7] = True
            if changed is not None:
                state[7] = True
            state[6] = size
            state[9] = len(f_locals)
            return changed

        def shown(state):
            # The bytes of the frame's locals as an event shows them: counted
            # when they differ from what its previous event showed.
            nonlocal recorded
            if state[7]:
                recorded += state[6] + 8
                state[7] = False

        def global_trace(frame, event, arg):
            nonlocal recorded, count
            ran[0] += 1  # Python code runs: any object may change in place
            if event != "call" or frame.f_code.co_filename != filename or tracer.truncated is not None:
                return None
            parent = frame.f_back
            while parent is not None and parent not in depth_of:
                parent = parent.f_back
            depth = depth_of[parent] + 1 if parent is not None else 1
            depth_of[frame] = depth
            if depth > max_depth:
                frame.f_trace_lines = False
                return untraced_frame
            code = frame.f_code
            func = getattr(code, "co_qualname", code.co_name)
            func_index = func_index_of.get(func)
            if func_index is None:
                func_index = func_index_of[func] = len(funcs)
                funcs.append(func)
            # state: [depth, func index, step of its pending line event (-1:
            #  none), repr cache (name -> (object, repr, flat items or
            #  None)), exception seen, skip dunders, size of the locals' names
            #  and reprs, locals changed since last shown, `ran` at the
            #  frame's last event, number of entries in its f_locals then,
            #  line of the pending line event]
            state = [depth, func_index, -1, {}, False,
                     code.co_name == "<module>" or not code.co_varnames, 0, True, 0, 0, 0]
            changed = changes(frame.f_locals, state)
            state[8] = ran[0]
            if count >= max_steps:
                return full("max_steps")
            line = def_lines.get(code.co_firstlineno, code.co_firstlineno)
            recorded += overhead
            if changed is not None:
                for name, text in changed.items():
                    recorded += len(name) + len(text)
            if record_locals:
                shown(state)
            if recorded > max_bytes:
                return full("max_bytes")
            record((0, line, depth, func_index))
            if changed is not None:
                for name, text in changed.items():
                    log_change((count, name, text))
            count += 1
            frames[frame] = state
            return local_trace

        def untraced_frame(frame, event, arg):
            if event == "return":
                depth_of.pop(frame, None)
            return untraced_frame

        def local_trace(frame, event, arg):
            nonlocal recorded, count
            state = frames.get(frame)
            if state is None:
                return None  # tracing stopped
            pending = state[2]
            size = overhead
            changed = rescan
            still = still_lines.get(state[10]) if pending >= 0 and state[8] == ran[0] else None
            if still is not None:
                # After a still line (`_tw_still_lines`), with no Python code
                # run since, only the names it may rebind can differ: look at
                # those, unless its checks fail or it bound a new name. Its
                # checks of what it read are made on the objects the names
                # held before it (the cache), so a line that binds nothing
                # does not even read the locals.
                builtins_read, containers_read, names, results = still
                cache = state[3]
                changed = None
                for name in builtins_read:
                    if name in cache or name in frame.f_globals \
                            or frame.f_builtins.get(name) is not real_builtins[name]:
                        changed = rescan
                        break
                else:
                    for name in containers_read:
                        if type(cache[name][0] if name in cache else frame.f_globals.get(name, rescan)) \
                                not in safe_types:
                            changed = rescan
                            break
                if names and changed is None:
                    f_locals = frame.f_locals
                    # A name newly bound adds an entry; a still line unbinds none.
                    if len(f_locals) != state[9]:
                        changed = rescan
                    else:
                        for name in results:
                            if type(f_locals.get(name, rescan)) not in unchanging:
                                changed = rescan  # an augmented assignment may have changed it in place
                                break
                    if changed is None:
                        shown_size = state[6]
                        first = None  # the one name changed, logged below; more: `changed`
                        for name in names:
                            hit = cache.get(name)
                            if hit is None:
                                continue
                            value = f_locals[name]
                            if value is hit[0]:
                                continue
                            entry = cache[name] = describe(value, type(value), hit)
                            text = entry[1]
                            if hit[1] != text:
                                shown_size += len(text) - len(hit[1])
                                if first is None:
                                    first = name
                                    first_text = text
                                else:
                                    if changed is None:
                                        changed = {first: first_text}
                                    changed[name] = text
                        if first is not None:
                            state[6] = shown_size
                            state[7] = True
                            if changed is None:
                                log_change((pending, first, first_text))
                                size += len(first) + len(first_text)
                            else:
                                # In the order of the locals, as `changes` lists them.
                                changed = {n: changed[n] for n in f_locals if n in changed}
            if changed is rescan:
                changed = changes(frame.f_locals, state)
            state[8] = ran[0]
            orphan = None
            if pending >= 0:
                # The state this frame's previous line left behind.
                if changed is not None:
                    for name, text in changed.items():
                        log_change((pending, name, text))
                        if text is not None:
                            size += len(name) + len(text)
                if record_locals and state[7]:
                    recorded += state[6] + 8  # the locals it shows are new
                    state[7] = False
                state[2] = -1
            elif changed is not None and record_locals:
                # Changed after the frame's last event, outside any line (a
                # context manager's exit while an exception unwinds): no
                # line's `changed`, but the locals shown from here on.
                orphan = changed
            if count >= max_steps:
                return full("max_steps")
            if event == "line":  # the common case, on its own
                state[4] = False
                recorded += size
                if recorded > max_bytes:
                    return full("max_bytes")
                line = frame.f_lineno
                record((1, line, state[0], state[1]))
                state[2] = count
                state[10] = line
                if orphan is not None:
                    for name, text in orphan.items():
                        log_before((count, name, text))
                count += 1
                return local_trace
            extra = None
            if event == "return":
                del frames[frame]
                depth_of.pop(frame, None)
                if record_locals:
                    shown(state)
                if state[4] and left_by_exception(frame):
                    kind = 4
                else:
                    kind = 2
                    extra = repr_value(arg)
                    size += len(extra)
            elif event == "exception":
                exc_kind, exc = arg[0], arg[1]
                if abort_types and issubclass(exc_kind, abort_types):
                    return full(getattr(exc_kind, "trace_reason", "aborted"))
                try:
                    message = str(exc)
                except BaseException:
                    message = "<unprintable>"
                message = cut(clean(message), max(limit or 0, 200))
                kind = 3
                extra = [exc_kind.__name__, message]
                state[4] = True
                size += len(message)
            else:
                return local_trace
            recorded += size
            if recorded > max_bytes:
                return full("max_bytes")
            record((kind, frame.f_lineno, state[0], state[1]))
            if extra is not None:
                log_extra((count, extra))
            if orphan is not None:
                for name, text in orphan.items():
                    log_before((count, name, text))
            count += 1
            return local_trace if kind != 2 and kind != 4 else None

        def full(reason):
            # A bound was reached: stop tracing; None also detaches this frame.
            tracer.stop(reason)

        def finish(frame, state):
            # Tracing ends mid-line: give the frame's pending line the state
            # it has now.
            pending = state[2]
            if pending >= 0:
                try:
                    changed = changes(frame.f_locals, state)
                except BaseException:
                    changed = None
                if changed is not None:
                    for name, text in changed.items():
                        log_change((pending, name, text))
                state[2] = -1

        def counts():
            return count, recorded

        self.global_trace = global_trace
        self._finish = finish
        self._counts = counts

    @property
    def bytes(self):
        """Bytes of event text recorded so far (what `max_bytes` bounds)."""
        return self._counts()[1]

    @property
    def steps(self):
        """Events recorded so far."""
        return self._counts()[0]

    # -- control -----------------------------------------------------------

    def start(self):
        self.active = True
        _tw_sys.settrace(self.global_trace)

    def stop(self, reason=None):
        if reason is not None and self.truncated is None:
            self.truncated = reason
        _tw_sys.settrace(None)
        for frame, state in list(self.frames.items()):
            self._finish(frame, state)
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
        """The trace in its compact form (what the sandbox sends to tw):
        `events`, four little-endian int32 per event (kind, line, depth,
        func), base64; `changed`, flat triples (step, name, repr or None when
        deleted) of call and line events; `extra`, pairs (step, a return's
        value or an exception's [type, message]); `before`, triples of
        changes seen at an event that no line made. Flat lists: a third of
        the cost of nested objects to write as JSON."""
        import binascii
        steps = _tw_array.array("i", self.events)
        if _tw_sys.byteorder == "big":
            steps.byteswap()
        return {"funcs": self.funcs,
                "events": binascii.b2a_base64(steps.tobytes(), newline=False).decode("ascii"),
                "changed": self.changes, "extra": self.extras, "before": self.befores,
                "locals": self.record_locals, "truncated": self.truncated}

    def expanded(self):
        """The trace with named fields, one dict per event (locals rebuilt
        as tw's reader rebuilds them)."""
        kinds = ("call", "line", "return", "exception", "return")
        out = []
        scopes = {}  # depth -> the locals of the frame running at that depth
        steps = self.events
        changed_at, before_at = {}, {}
        for log, at in ((self.changes, changed_at), (self.befores, before_at)):
            for i in range(0, len(log), 3):
                at.setdefault(log[i], {})[log[i + 1]] = log[i + 2]
        extra_at = dict(zip(self.extras[::2], self.extras[1::2]))
        for step in range(len(steps) // 4):
            kind, line, depth, func = steps[4 * step:4 * step + 4]
            ev = {"step": step, "kind": kinds[kind], "line": line, "depth": depth,
                  "func": self.funcs[func]}
            changed = changed_at.get(step, {}) if kind <= 1 else None
            if changed is not None:
                ev["changed"] = {k: v for k, v in changed.items() if v is not None}
            if self.record_locals:
                scope = {} if kind == 0 else scopes.setdefault(depth, {})
                scopes[depth] = scope
                for delta in (before_at.get(step), changed):
                    for name, text in (delta or {}).items():
                        if text is None:
                            scope.pop(name, None)
                        else:
                            scope[name] = text
                if kind != 3:
                    ev["locals"] = dict(scope)
            extra = extra_at.get(step)
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
