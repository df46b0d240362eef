"""The README's tour must run as printed (a newcomer copies it)."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(tmp_path)
    ns = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)
    # the tour's claims: x.grad is d/dx sum(tanh(x) * x), the model trained, the file exists
    x = ns["x"].data.astype(np.float64)
    np.testing.assert_allclose(ns["x"].grad, np.tanh(x) + x * (1 - np.tanh(x) ** 2), rtol=1e-5,
                               err_msg="README: x.grad")
    assert np.isfinite(ns["loss"].item())
    assert (tmp_path / "model.npz").exists()
