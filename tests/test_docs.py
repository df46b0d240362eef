"""Run every ```python block of docs/autograd.md, so the document stays true.

Each block is self-contained and checks itself with asserts; a block that raises fails here,
with the block's first line number in the test id."""
import contextlib
import io
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "autograd.md"


def _blocks(path):
    text = path.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S):
        line = text.count("\n", 0, m.start()) + 2
        # pad with blank lines so tracebacks point at the document's own line numbers
        out.append(pytest.param("\n" * (line - 1) + m.group(1), id=f"line{line}"))
    return out


BLOCKS = _blocks(DOC)


def test_the_document_has_snippets():
    assert len(BLOCKS) >= 8
    assert all("assert" in b.values[0] for b in BLOCKS), "every snippet must check something"


@pytest.mark.parametrize("code", BLOCKS)
def test_snippet_runs(code):
    compiled = compile(code, str(DOC), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compiled, {"__name__": "__doc_snippet__"})
