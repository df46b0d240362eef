"""Run every ```python block of docs/autograd.md and docs/design.md, so the documents stay true.

Each block is self-contained and checks itself with asserts; a block that raises fails here,
with the document's name and the block's first line number in the test id. The blocks run as
a plain install would run them: no pytest in their namespace."""

import contextlib
import io
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
# document -> the fewest snippets it must have (a block lost to a broken fence fails here)
MIN_SNIPPETS = {"autograd.md": 8, "design.md": 1}


def _blocks(path):
    text = path.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S):
        line = text.count("\n", 0, m.start()) + 2
        # pad with blank lines so tracebacks point at the document's own line numbers
        out.append(("\n" * (line - 1) + m.group(1), f"{path.name}:line{line}"))
    return out


BLOCKS = {name: _blocks(DOCS / name) for name in MIN_SNIPPETS}


@pytest.mark.parametrize("name", sorted(MIN_SNIPPETS))
def test_the_document_has_snippets(name):
    blocks = BLOCKS[name]
    assert len(blocks) >= MIN_SNIPPETS[name], f"{name}: {len(blocks)} python blocks"
    for code, where in blocks:
        assert "assert" in code, f"{where}: every snippet must check something"
        assert not re.search(r"^\s*(import pytest|from pytest)", code, flags=re.M), (
            f"{where}: a snippet must run in a plain install (no pytest)"
        )


@pytest.mark.parametrize(
    "name,code",
    [pytest.param(name, code, id=where) for name in sorted(BLOCKS) for code, where in BLOCKS[name]],
)
def test_snippet_runs(name, code):
    compiled = compile(code, str(DOCS / name), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compiled, {"__name__": "__doc_snippet__"})
