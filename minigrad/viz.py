"""Look at the tape: the graph of Function nodes behind a tensor, as text or as Graphviz DOT.

    >>> import minigrad as mg
    >>> from minigrad.viz import print_tape
    >>> w = mg.tensor([[0.5, -1.0]], requires_grad=True)
    >>> print_tape((w * 2).tanh().sum(), names={"w": w})  # doctest: +SKIP

``format_tape`` lists the nodes in an order where every node comes after the nodes it reads
(the order forward ran them, up to ties), one line per node: its op name, what each input is
(the output of an earlier node ``%n[k]``, a leaf that requires grad, or a constant), and its
output shapes and dtype.  Runs of identical steps (same ops, same shapes, e.g. one recurrent cell
per time step) are folded into one line or block marked ``× N``, so a 1000-step unrolled LSTM
reads as ``LSTMCell × 1000``.  ``to_dot`` gives the same graph to Graphviz.

Both walk the graph with explicit stacks (no recursion), so graphs of 10^5 nodes are fine.
A node only knows its inputs, not its outputs, so an output shape is known when some node (or
the root) uses that output; unused outputs print as ``?``.
"""

from __future__ import annotations

import re
import sys

from .tensor import Tensor

__all__ = ["format_tape", "print_tape", "to_dot"]

_LEGEND = (
    "inputs: %n[k] = output k of node n (needs grad);  "
    "leaf NAME = a leaf that requires grad;\n"
    "        const = a tensor without grad;  - = a non-tensor argument;\n"
    "        a | prev[k] = a at the first step, then output k of the previous step"
)


# ------------------------------------------------------------------------------ graph walk
def _check_tensor(tensor):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"expected a minigrad Tensor, got {type(tensor).__name__}")


def _children(node):
    """Distinct creator nodes of a node's inputs, in input order."""
    out = []
    seen = set()
    for t in node.inputs:
        if t is None:
            continue
        c = t._ctx
        if c is not None and id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def _postorder(root_node, kids_of):
    """Nodes reachable from root_node, each after all nodes it reads (iterative DFS).
    ``kids_of(node)`` gives the input nodes in the order they should be visited."""
    order = []
    state = set()
    stack = [(root_node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in state:
            continue
        state.add(id(node))
        stack.append((node, True))
        kids = kids_of(node)
        for c in reversed(kids):
            if id(c) not in state:
                stack.append((c, False))
    return order


def _ordered_nodes(root_node):
    """Topological order that keeps each time step together: when a node has several inputs
    made by other nodes, the deepest one (the recurrent chain) is visited first, so everything
    else a step computes is printed right after the previous step rather than all at the top."""
    kids = {}

    def first_pass(node):
        k = kids[id(node)] = _children(node)
        return k

    first = _postorder(root_node, first_pass)
    if all(len(k) < 2 for k in kids.values()):
        return first  # a plain chain (or tree of single inputs): no choice to make
    height = {}
    for node in first:
        h = 0
        for c in kids[id(node)]:
            hc = height[id(c)] + 1
            if hc > h:
                h = hc
        height[id(node)] = h

    def deepest_first(node):
        k = kids[id(node)]
        if len(k) < 2:
            return k
        return sorted(k, key=lambda c: -height[id(c)])  # stable: ties keep input order

    return _postorder(root_node, deepest_first)


class _Graph:
    """Everything the printers need, computed once."""

    def __init__(self, tensor, names):
        self.root = tensor
        self.leaf_names = _leaf_names(names)
        self.nodes = _ordered_nodes(tensor._ctx) if tensor._ctx is not None else []
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        # Output shapes and dtypes, as seen by consumers of each output (and by the root).
        self.out_shapes = [[None] * max(n.n_out, 1) for n in self.nodes]
        self.out_dtype = [None] * len(self.nodes)
        self.leaves = {}  # id -> tensor, leaves that require grad, first-use order
        self.n_const = 0
        for node in self.nodes:
            for t in node.inputs:
                if t is None:
                    continue
                c = t._ctx
                if c is not None:
                    j = self.index[id(c)]
                    if t._idx < len(self.out_shapes[j]):
                        self.out_shapes[j][t._idx] = t.data.shape
                    self.out_dtype[j] = t.data.dtype
                elif t.requires_grad:
                    self.leaves.setdefault(id(t), t)
                else:
                    self.n_const += 1
        if self.nodes:
            j = self.index[id(tensor._ctx)]
            if tensor._idx < len(self.out_shapes[j]):
                self.out_shapes[j][tensor._idx] = tensor.data.shape
            self.out_dtype[j] = tensor.data.dtype
        self.labels = {}
        k = 0
        for tid in self.leaves:
            name = self.leaf_names.get(tid)
            if name is None:
                name = f"p{k}"
                k += 1
            self.labels[tid] = name

    def dtype_of(self, i):
        dt = self.out_dtype[i]
        if dt is None:
            for t in self.nodes[i].inputs:
                if t is not None and t.data.dtype.kind == "f":
                    return t.data.dtype
            return None
        return dt


def _leaf_names(names):
    """{id(tensor): name} from a dict name->Tensor, (name, Tensor) pairs, or a Module."""
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):
        names = names.named_parameters()
    items = names.items() if hasattr(names, "items") else names
    out = {}
    for name, t in items:
        if not isinstance(t, Tensor):
            raise TypeError(f"names: {name!r} maps to a {type(t).__name__}, expected a Tensor")
        out.setdefault(id(t), str(name))
    return out


# ------------------------------------------------------------------------------ text form
def _plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


def _shape(s):
    if s is None:
        return "?"
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def _ref(g, i, t, with_shape=True):
    """Text for input tensor t of node i."""
    if t is None:
        return "-"
    c = t._ctx
    sh = " " + _shape(t.data.shape) if with_shape else ""
    if c is not None:
        j = g.index[id(c)]
        k = f"[{t._idx}]" if c.n_out > 1 else ""
        return f"%{j}{k}{sh}"
    if t.requires_grad:
        return f"leaf {g.labels[id(t)]}{sh}"
    return f"const{sh}"


def _sig(g, i):
    """What must match for two nodes to count as the same step (outputs compared loosely)."""
    node = g.nodes[i]
    ins = tuple(None if t is None else (t.data.shape, t.data.dtype.str) for t in node.inputs)
    return (node.name, node.n_out, ins)


def _outs_compatible(a, b):
    return all(x is None or y is None or x == y for x, y in zip(a, b))


def _same_step(g, sigs, i, j):
    a, b = sigs[i], sigs[j]
    if a is not b and a != b:
        # A non-tensor argument (None: shape unknown) matches any input: the first cell of an
        # unrolled loop often gets ndarray zeros where later cells get the previous state.
        if a[0] != b[0] or a[1] != b[1] or len(a[2]) != len(b[2]):
            return False
        if not all(x is None or y is None or x == y for x, y in zip(a[2], b[2])):
            return False
    return _outs_compatible(g.out_shapes[i], g.out_shapes[j])


def _find_runs(g, min_repeat, max_period):
    """Split the node list into (start, period, repeats) pieces, greedily taking at each
    position the longest stretch made of one block of `period` nodes repeated."""
    n = len(g.nodes)
    interned = {}
    sigs = [interned.setdefault(s, s) for s in (_sig(g, i) for i in range(n))]
    pieces = []
    i = 0
    while i < n:
        best = (1, 1)  # period, repeats
        if min_repeat:
            for p in range(1, max_period + 1):
                if i + p * min_repeat > n:
                    break
                r = 1
                while i + (r + 1) * p <= n and all(
                    _same_step(g, sigs, i + q, i + r * p + q) for q in range(p)
                ):
                    r += 1
                if r >= min_repeat and p * r > best[0] * best[1]:
                    best = (p, r)
                if p == 1 and r >= max_period:
                    break  # a longer block would repeat this one op: it cannot cover more
        p, r = best
        if r >= min_repeat:
            pieces.append((i, p, r))
            i += p * r
        else:
            pieces.append((i, 1, 1))
            i += 1
    return pieces


def _merged_input(g, start, p, r, q, k):
    """Describe input k of block position q across the r repetitions of a run."""
    first = g.nodes[start + q].inputs[k]
    d0 = _ref(g, start + q, first)
    texts = {d0}
    chained = r > 1
    offsets = set()
    for rep in range(r):
        i = start + rep * p + q
        t = g.nodes[i].inputs[k]
        if rep:
            texts.add(_ref(g, i, t))
        c = None if t is None else t._ctx
        j = None if c is None else g.index[id(c)]
        if rep:
            lo = start + (rep - 1) * p
            if j is None or not (lo <= j < lo + p):
                chained = False
        offsets.add(None if j is None else (i - j, t._idx))
    if len(texts) == 1:
        return d0
    if len(offsets) == 1 and None not in offsets:
        off, _ = next(iter(offsets))
        if off <= q:  # an input made earlier in the same repetition: show the first one
            return d0
    if chained:
        t = g.nodes[start + p + q].inputs[k]
        return f"{d0} | prev[{t._idx}]"
    last = _ref(g, start + (r - 1) * p + q, g.nodes[start + (r - 1) * p + q].inputs[k])
    return f"varies: {d0} ... {last}"


_NUM = re.compile(r"%\d+(\[\d+\])?")


def _squeeze_list(items, min_run=4):
    """Runs of at least ``min_run`` similar entries (equal up to node numbers) in one entry:
    ``const (2, 4) × 50`` or ``%0[0] (2, 4) ... %49[0] (2, 4) (50 inputs)``."""
    out = []
    i = 0
    n = len(items)
    while i < n:
        key = _NUM.sub("%", items[i])
        j = i + 1
        while j < n and _NUM.sub("%", items[j]) == key:
            j += 1
        if j - i >= min_run:
            if all(items[k] == items[i] for k in range(i, j)):
                out.append(f"{items[i]} × {j - i}")
            else:
                out.append(f"{items[i]} ... {items[j - 1]} ({j - i} of them)")
        else:
            out.extend(items[i:j])
        i = j
    return out


def _node_line(g, i, ins, count=None, ident=None):
    node = g.nodes[i]
    dt = g.dtype_of(i)
    ins = _squeeze_list(ins)
    outs = ", ".join(_squeeze_list([_shape(s) for s in g.out_shapes[i]]))
    name = node.name if count is None else f"{node.name} × {count}"
    ident = f"%{i}" if ident is None else ident
    return f"{ident:<12} {name:<18} in: {', '.join(ins) if ins else '(none)'}  ->  {outs} {dt}"


def format_tape(tensor, names=None, collapse=3, max_period=16):
    """The graph behind ``tensor`` as text, one line per node (inputs before users).

    names: optional dict ``{name: tensor}`` (or ``(name, tensor)`` pairs, or a Module, whose
    ``named_parameters()`` are used) naming the leaves; others are called p0, p1, ...
    collapse: fold a block of up to ``max_period`` nodes repeated at least this many times in a
    row (same ops and shapes) into one entry marked ``× N``; 0 or None prints every node.
    """
    _check_tensor(tensor)
    g = _Graph(tensor, names)
    root_desc = f"{_shape(tensor.data.shape)} {tensor.data.dtype}"
    if tensor._ctx is None:
        what = "a leaf that requires grad" if tensor.requires_grad else "a constant"
        return f"tape of tensor {root_desc}: {what}, made by no node (empty tape)\n"
    lines = []
    ri = g.index[id(tensor._ctx)]
    k = f"[{tensor._idx}]" if tensor._ctx.n_out > 1 else ""
    ops = sorted({n.name for n in g.nodes})
    lines.append(f"tape of tensor {root_desc} = %{ri}{k} ({tensor._ctx.name})")
    lines.append(
        f"{_plural(len(g.nodes), 'node', 'nodes')} "
        f"({_plural(len(ops), 'kind', 'kinds')} of op: {', '.join(ops)}); "
        f"{_plural(len(g.leaves), 'leaf requires', 'leaves require')} grad; "
        f"{_plural(g.n_const, 'constant input', 'constant inputs')}"
    )
    if g.leaves:
        lines.append("leaves that require grad:")
        for tid, t in g.leaves.items():
            lines.append(f"  {g.labels[tid]:<14} {_shape(t.data.shape)} {t.data.dtype}")
    lines.append(_LEGEND)
    lines.append("nodes (each after the nodes it reads):")
    for start, p, r in _find_runs(g, collapse or 0, max_period):
        if r == 1:
            node = g.nodes[start]
            lines.append("  " + _node_line(g, start, [_ref(g, start, t) for t in node.inputs]))
            continue
        end = start + p * r - 1
        ident = f"%{start}..%{end}"
        if p == 1:
            ins = [_merged_input(g, start, 1, r, 0, k) for k in range(len(g.nodes[start].inputs))]
            lines.append("  " + _node_line(g, start, ins, count=r, ident=ident))
            continue
        block = " -> ".join(g.nodes[start + q].name for q in range(p))
        lines.append(f"  {ident:<12} × {r} of the block [{block}]; first step:")
        for q in range(p):
            i = start + q
            ins = [_merged_input(g, start, p, r, q, k) for k in range(len(g.nodes[i].inputs))]
            lines.append("    " + _node_line(g, i, ins))
    return "\n".join(lines) + "\n"


def print_tape(tensor, file=None, names=None, collapse=3, max_period=16):
    """Print ``format_tape(tensor, ...)`` to ``file`` (default: sys.stdout)."""
    text = format_tape(tensor, names=names, collapse=collapse, max_period=max_period)
    (file if file is not None else sys.stdout).write(text)


# ------------------------------------------------------------------------------ DOT form
def _dot_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(tensor, names=None):
    """Graphviz DOT text of the graph behind ``tensor``: a box per op node, an ellipse per leaf
    tensor (filled when it requires grad, dashed for constants), an edge from each input to the
    op that reads it, and an ``output`` node for ``tensor`` itself.  Render with
    ``dot -Tsvg tape.dot -o tape.svg`` if Graphviz is installed."""
    _check_tensor(tensor)
    g = _Graph(tensor, names)
    out = [
        "digraph tape {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    leaf_ids = {}

    def leaf_node(t):
        key = id(t)
        name = leaf_ids.get(key)
        if name is None:
            name = leaf_ids[key] = f"t{len(leaf_ids)}"
            desc = f"{_shape(t.data.shape)} {t.data.dtype}"
            if t.requires_grad:
                label = f"{g.labels.get(key, 'leaf')}\n{desc}"
                out.append(
                    f"  {name} [shape=ellipse, style=filled, fillcolor=lightblue, "
                    f"label={_dot_str(label)}];"
                )
            else:
                out.append(
                    f"  {name} [shape=ellipse, style=dashed, "
                    f"label={_dot_str('const' + chr(10) + desc)}];"
                )
        return name

    for i, node in enumerate(g.nodes):
        outs = ", ".join(_shape(s) for s in g.out_shapes[i])
        label = f"%{i} {node.name}\n{outs} {g.dtype_of(i)}"
        out.append(f"  n{i} [shape=box, style=rounded, label={_dot_str(label)}];")
    for i, node in enumerate(g.nodes):
        for t in node.inputs:
            if t is None:
                continue
            c = t._ctx
            if c is None:
                src = leaf_node(t)
                out.append(f"  {src} -> n{i};")
            else:
                j = g.index[id(c)]
                k = f"[{t._idx}] " if c.n_out > 1 else ""
                out.append(f"  n{j} -> n{i} [label={_dot_str(k + _shape(t.data.shape))}];")
    desc = f"output\n{_shape(tensor.data.shape)} {tensor.data.dtype}"
    out.append(f"  output [shape=doubleoctagon, label={_dot_str(desc)}];")
    if tensor._ctx is None:
        src = leaf_node(tensor)
        out.append(f"  {src} -> output;")
    else:
        j = g.index[id(tensor._ctx)]
        out.append(f"  n{j} -> output;")
    out.append("}")
    return "\n".join(out) + "\n"
