"""Malformed and malicious checkpoint files, and saves killed part-way: load refuses every
hostile file with a ValueError naming it, allocates nothing a file merely declares, and a
``kill -9`` during save leaves the old file or the new one, never a partial one, and nothing
that blocks a later save."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import minigrad as mg

from .conftest import FULL

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _npy(arr, **kw):
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def _manifest(tree):
    return _npy(
        np.frombuffer(
            json.dumps({"format": "minigrad.save", "version": 1, "tree": tree}).encode(), np.uint8
        )
    )


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _fake_header(shape, dtype="<f8"):
    """A .npy member whose header declares `shape` but carries 16 bytes of data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 16


ARRAY = {"t": "array", "key": "a"}
HOSTILE = {
    "pickled object member": lambda p: _zip(
        p,
        {
            "a.npy": _npy(np.array([{"x": 1}], dtype=object), allow_pickle=True),
            "__minigrad_manifest__.npy": _manifest(ARRAY),
        },
    ),
    "declares 2**40 float64": lambda p: _zip(
        p, {"a.npy": _fake_header((2**40,)), "__minigrad_manifest__.npy": _manifest(ARRAY)}
    ),
    "declares 2**62 * 2**62 elements": lambda p: _zip(
        p, {"a.npy": _fake_header((2**62, 2**62)), "__minigrad_manifest__.npy": _manifest(ARRAY)}
    ),
    "one member referenced 64 times": lambda p: _zip(
        p,
        {
            "a.npy": _npy(np.zeros(1000)),
            "__minigrad_manifest__.npy": _manifest({"t": "list", "items": [ARRAY] * 64}),
        },
    ),
    "deflate bomb over the budget": lambda p: _zip(
        p,
        {
            "a.npy": _npy(np.zeros(2**24)),  # 128 MiB of zeros, ~130 KB compressed
            "__minigrad_manifest__.npy": _manifest(ARRAY),
        },
        zipfile.ZIP_DEFLATED,
    ),
    "object dtype header": lambda p: _zip(
        p, {"a.npy": _fake_header((2,), "|O"), "__minigrad_manifest__.npy": _manifest(ARRAY)}
    ),
    "manifest names the manifest": lambda p: _zip(
        p, {"__minigrad_manifest__.npy": _manifest({"t": "array", "key": "__minigrad_manifest__"})}
    ),
    "path traversal member": lambda p: _zip(
        p,
        {
            "../../evil.npy": _npy(np.ones(2)),
            "__minigrad_manifest__.npy": _manifest({"t": "array", "key": "../../evil2"}),
        },
    ),
    "key is not a string": lambda p: _zip(
        p,
        {
            "a.npy": _npy(np.ones(2)),
            "__minigrad_manifest__.npy": _manifest({"t": "array", "key": ["a"]}),
        },
    ),
    "deep list manifest": lambda p: _zip(
        p,
        {
            "__minigrad_manifest__.npy": _npy(
                np.frombuffer(
                    b'{"format": "minigrad.save", "version": 1, "tree": '
                    + b'{"t": "list", "items": [' * 100_000
                    + b'{"t": "none"}'
                    + b"]}" * 100_000
                    + b"}",
                    np.uint8,
                )
            )
        },
    ),
    "manifest is float64": lambda p: _zip(p, {"__minigrad_manifest__.npy": _npy(np.zeros(4))}),
    "truncated member": lambda p: _zip(
        p, {"a.npy": _npy(np.ones(100))[:-50], "__minigrad_manifest__.npy": _manifest(ARRAY)}
    ),
    "empty file": lambda p: open(p, "wb").close() or p,
    "garbage": lambda p: open(p, "wb").write(os.urandom(4096)) and p,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_refused_clearly(name, tmp_path):
    path = HOSTILE[name](str(tmp_path / "evil.npz"))
    with pytest.raises(ValueError, match="evil.npz"):
        mg.load(path, max_bytes=64 << 20)
    assert not os.path.exists(tmp_path.parent / "evil.npy")


# ----- kill -9 during save --------------------------------------------------------------------
SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import minigrad as mg
    n = 0
    while True:
        n += 1
        # every array of one file holds its own n: a mixed or partial file shows
        mg.save({{"n": n, "a": np.full(1 << 20, n, np.float64), "b": np.full(1 << 18, n)}},
                {path!r})
        print(n, flush=True)
""")


def test_kill_9_during_save_leaves_old_or_new_and_never_blocks(tmp_path):
    target = str(tmp_path / "ck.npz")
    kills = 20 if FULL else 4
    rng = np.random.default_rng(0)
    seen = set()
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER.format(root=ROOT, path=target)],
            stdout=subprocess.PIPE,
            text=True,
        )
        proc.stdout.readline()  # one complete save first
        time.sleep(float(rng.uniform(0, 0.15)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        ck = mg.load(target)
        n = ck["n"]
        assert (ck["a"] == n).all() and (ck["b"] == n).all(), f"kill {k}: a mixed file"
        seen.add(n)
        mg.save({"n": -k}, target)  # litter left by the kill does not block a save
        assert mg.load(target) == {"n": -k}
    litter = [f for f in os.listdir(tmp_path) if f != "ck.npz"]
    assert all(f.startswith(".ck.npz.") and f.endswith(".tmp") for f in litter), litter
    assert len(litter) <= kills
