"""The README's tour must run as printed (a newcomer copies it) and show what the README says."""

import contextlib
import io
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs_and_prints_a_gradient_and_a_falling_loss(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__readme__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            assert not re.search(r"^\s*(import pytest|from pytest)", code, re.M), (
                "README snippets must run in a plain install (no pytest)"
            )
            exec(compile(code, "README.md", "exec"), ns)
    printed = out.getvalue()
    # the tour's claims: x.grad is d/dx sum(tanh(x) * x) and is printed, the model's loss is
    # printed and falls, the model file exists
    x = ns["x"].data.astype(np.float64)
    np.testing.assert_allclose(
        ns["x"].grad, np.tanh(x) + x * (1 - np.tanh(x) ** 2), rtol=1e-5, err_msg="README: x.grad"
    )
    assert "x.grad" in printed, printed
    losses = [float(v) for v in re.findall(r"loss ([0-9.eE+-]+)", printed)]
    assert len(losses) >= 3, f"README: the tour prints its loss at least 3 times:\n{printed}"
    assert losses[0] > 0.5 and losses[-1] < 0.01, f"README: the loss falls: {losses}"
    assert all(b < a for a, b in zip(losses, losses[1:])), f"README: the loss falls: {losses}"
    assert np.isclose(ns["loss"].item(), losses[-1], rtol=5e-3)
    assert "8,066" in printed, "README: nn.summary's parameter count, as the README states"
    assert (tmp_path / "model.npz").exists()


def test_readme_has_no_development_history():
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"\b(?:sessions?|issue [0-9]+)\b|\b(?:at|commits?) [0-9a-f]{7,40}\b", text)
    assert not found, f"README: development history in user-facing text: {found}"
    assert "../shared" not in text, "README: links outside the repository"
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (README.parent / link).exists(), f"README links to a missing file: {link}"
