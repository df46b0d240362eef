"""minigrad.viz: the tape as text (format_tape/print_tape) and as Graphviz DOT (to_dot)."""

import io
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.viz import format_tape, print_tape, to_dot


def _lstm_chain(T, B=3, I=5, H=4, seed=0):
    rng = np.random.default_rng(seed)
    w = {
        "w_ih": mg.tensor(rng.standard_normal((4 * H, I)) * 0.3, requires_grad=True),
        "w_hh": mg.tensor(rng.standard_normal((4 * H, H)) * 0.3, requires_grad=True),
        "b_ih": mg.tensor(np.zeros(4 * H), requires_grad=True),
        "b_hh": mg.tensor(np.zeros(4 * H), requires_grad=True),
    }
    xs = mg.tensor(rng.standard_normal((T, B, I)))
    h = c = None
    for t in range(T):
        h, c = F.lstm_cell(xs[t], h, c, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"])
    return (h * h).sum(), w


def _node_lines(text):
    return [ln for ln in text.splitlines() if ln.lstrip().startswith("%")]


def test_small_graph_lists_ops_shapes_dtype_and_input_kinds():
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)  # float64 leaf
    x = mg.tensor(np.ones((4, 3)))  # constant
    y = (x @ w).tanh().sum()
    text = format_tape(y, names={"weight": w})
    lines = _node_lines(text)
    assert [ln.split()[1] for ln in lines] == ["MatMul", "Tanh", "Sum"]
    assert "const (4, 3)" in lines[0] and "leaf weight (3, 2)" in lines[0]
    assert "->  (4, 2) float64" in lines[0]
    assert "%0 (4, 2)" in lines[1]  # Tanh reads MatMul's output
    assert lines[2].endswith("->  () float64")
    assert "weight" in text and "1 leaf requires grad" in text
    assert "= %2 (Sum)" in text.splitlines()[0]


def test_unnamed_leaves_get_short_labels_and_module_names_work():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], requires_grad=True)
    text = format_tape(a * b)
    assert "leaf p0 (2,)" in text and "leaf p1 (2,)" in text

    class FakeModule:
        def named_parameters(self):
            return iter([("first", a), ("second", b)])

    text = format_tape(a * b, names=FakeModule())
    assert "leaf first (2,)" in text and "leaf second (2,)" in text
    with pytest.raises(TypeError, match="expected a Tensor"):
        format_tape(a * b, names={"x": 3.0})
    with pytest.raises(TypeError, match="expected a minigrad Tensor"):
        format_tape(np.ones(3))


def test_multi_output_node_shows_each_output():
    x = mg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    parts = x.unbind(0)
    y = parts[0] * parts[2]
    lines = _node_lines(format_tape(y))
    assert lines[0].split()[1] == "Split"
    assert "(2,), ?, (2,)" in lines[0]  # the middle output is never used
    assert "%0[0] (2,)" in lines[1] and "%0[2] (2,)" in lines[1]


def test_unrolled_lstm_collapses_to_one_line_times_100():
    loss, w = _lstm_chain(100)
    text = format_tape(loss, names=w)
    cell_lines = [ln for ln in _node_lines(text) if "LSTMCell" in ln]
    assert len(cell_lines) == 1, text
    line = cell_lines[0]
    assert "LSTMCell × 100" in line
    assert "%0..%99" in line
    assert "->  (3, 4), (3, 4) float64" in line
    assert "leaf w_ih (16, 5)" in line and "leaf w_hh (16, 4)" in line
    assert "prev[0]" in line and "prev[1]" in line  # h and c come from the previous step
    assert len(_node_lines(text)) == 3  # cells, Mul, Sum


def test_collapse_can_be_turned_off():
    loss, _ = _lstm_chain(10)
    lines = _node_lines(format_tape(loss, collapse=0))
    assert sum("LSTMCell" in ln for ln in lines) == 10
    assert not any("×" in ln for ln in lines)


def test_repeated_block_of_primitive_ops_is_folded():
    rng = np.random.default_rng(1)
    W = mg.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    U = mg.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True)
    xs = mg.tensor(rng.standard_normal((30, 2, 5)))
    h = mg.tensor(np.zeros((2, 4)))
    for t in range(30):
        h = (xs[t] @ W + h @ U).tanh()
    text = format_tape(h.sum())
    m = re.search(r"× (\d+) of the block \[([^\]]+)\]", text)
    assert m, text
    assert int(m.group(1)) >= 28
    assert sorted(m.group(2).split(" -> ")) == ["Add", "MatMul", "MatMul", "Tanh"]
    assert len(_node_lines(text)) < 15  # 121 nodes, folded


def test_different_shapes_are_not_folded():
    x = mg.tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(3, 8):  # each step changes the shape
        y = F.concatenate([y, mg.tensor(np.ones(1))])
    assert not any("×" in ln for ln in _node_lines(format_tape(y.sum())))


def test_print_tape_writes_to_file_and_leaf_root():
    w = mg.tensor([1.0], requires_grad=True)
    buf = io.StringIO()
    print_tape(w * 3, file=buf)
    assert "Mul" in buf.getvalue()
    assert "empty tape" in format_tape(w)


def test_100000_node_chain_formats_without_recursion():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    text = format_tape(y)
    assert "Mul × 100000" in text
    dot = to_dot(y)
    assert dot.count("->") == 100_000 + 1  # one edge per input, plus the output edge


def test_100000_nodes_without_repetition_also_work():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for i in range(50_000):
        y = (y * 1.0).tanh() if i % 2 else (y + 0.0)
    lines = _node_lines(format_tape(y, collapse=0))
    assert len(lines) == 75_000


# ------------------------------------------------------------------------------ DOT
def _dot_edges(dot):
    return re.findall(r"^\s*(\w+) -> (\w+)", dot, flags=re.M)


def test_dot_is_well_formed_with_an_edge_per_input():
    loss, w = _lstm_chain(5)
    dot = to_dot(loss, names=w)
    assert dot.startswith("digraph")
    assert dot.count("{") == dot.count("}") and dot.rstrip().endswith("}")
    edges = _dot_edges(dot)
    # tensor inputs: 5 cells x (x, w_ih, w_hh, b_ih, b_hh) + 4 x (h, c) + Mul (2) + Sum (1)
    assert len(edges) == 5 * 5 + 4 * 2 + 2 + 1 + 1  # + the edge into the output node
    declared = set(re.findall(r"^\s*(\w+) \[", dot, flags=re.M))
    for a, b in edges:
        assert a in declared and b in declared
    assert dot.count("LSTMCell") == 5
    assert 'label="w_ih' in dot
    # weights are one node each however many steps use them
    assert dot.count("w_hh\\n") == 1


def test_dot_escapes_quotes_in_names():
    a = mg.tensor([1.0], requires_grad=True)
    dot = to_dot(a * 2, names={'say "hi"': a})
    assert 'say \\"hi\\"' in dot
    # every label string is closed
    for line in dot.splitlines():
        assert line.replace('\\"', "").count('"') % 2 == 0, line


def test_long_input_and_output_lists_are_squeezed():
    x = mg.tensor(np.ones((40, 3)), requires_grad=True)
    parts = x.unbind(0)  # one node, 40 outputs
    y = F.stack(list(parts))  # one node, 40 inputs
    lines = _node_lines(format_tape(y.sum()))
    assert "(3,) × 40" in lines[0]
    assert "%0[0] (3,) ... %0[39] (3,) (40 of them)" in lines[1]
    assert all(len(ln) < 200 for ln in lines)


def test_nn_lstm_tape_unrolled_and_fused():
    from minigrad import nn

    mg.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, impl="step")
    x = np.random.default_rng(0).standard_normal((2, 30, 3)).astype(np.float32)
    out, _ = lstm(x)
    text = format_tape(out.sum(), names=lstm)
    cells = [ln for ln in _node_lines(text) if "LSTMCellStep" in ln]
    assert len(cells) == 2 and all("LSTMCellStep × 30" in ln for ln in cells)  # one per layer
    assert "leaf weight_hh_l1 (16, 4)" in cells[1]
    # the input projection of all steps is one Linear node per layer, before its steps
    projections = [ln for ln in _node_lines(text) if ln.split()[1] == "Linear"]
    assert len(projections) == 2 and "leaf weight_ih_l1 (16, 4)" in projections[1]
    lstm.impl = "sequence"
    out, _ = lstm(x)
    ops = [ln.split()[1] for ln in _node_lines(format_tape(out.sum()))]
    assert ops.count("LSTMSequence") == 2 and "LSTMCellStep" not in ops


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_print_tape_shows_each_recurrent_implementation(mode):
    """impl="sequence": one node; "step": T compiled cell nodes folded into one line; "composed":
    the gates as primitive nodes, each step one block folded into one entry (all but the first
    step, whose h is still the zero array)."""
    from minigrad import nn

    T = 12
    x = mg.tensor(np.random.default_rng(0).standard_normal((T, 2, 3)), requires_grad=True)
    texts = {}
    for impl in ("sequence", "step", "composed"):
        mg.manual_seed(0)
        m = getattr(nn, mode)(3, 4, impl=impl, dtype=np.float64)
        out, _ = m(x)
        buf = io.StringIO()
        print_tape(out.sum(), file=buf, names=m)
        texts[impl] = buf.getvalue()
    ops = {impl: [ln.split()[1] for ln in _node_lines(t)] for impl, t in texts.items()}
    assert ops["sequence"] == [f"{mode}Sequence", "Sum"]
    assert f"{mode}CellStep × {T}" in texts["step"]
    assert ops["step"].count("Linear") == 1  # the hoisted input projection
    composed = texts["composed"]
    assert f"{mode}Sequence" not in composed and f"{mode}CellStep" not in composed
    gates = {
        "RNN": {"Linear", "Add", "Tanh"},
        "LSTM": {"Linear", "Split", "Add", "Sigmoid", "Tanh", "Mul"},
        "GRU": {"Linear", "Split", "Add", "Sigmoid", "Tanh", "Mul", "Sub"},
    }[mode]
    block = re.search(rf"× {T - 1} of the block \[([^\]]*)\]", composed)
    assert block, composed
    assert set(block.group(1).split(" -> ")) == gates
    assert "leaf weight_hh_l0" in composed and "leaf bias_ih_l0" in composed
    assert all(len(ln) < 220 for ln in composed.splitlines())
