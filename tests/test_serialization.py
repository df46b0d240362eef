"""minigrad.save / minigrad.load: .npz checkpoints without pickle."""

import json
import math
import os
import pathlib
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim


def assert_same(a, b, where="<root>"):
    """Equal structure, container types, key types, dtypes and values."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert type(k) is type(next(x for x in b if x == k and type(x) is type(k))), where
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        )
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, mg.Tensor):
        assert a.requires_grad == b.requires_grad, where
        assert_same(a.data, b.data, where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"
        if isinstance(a, np.generic):
            assert a.dtype == b.dtype, where


def nested_checkpoint():
    rng = np.random.default_rng(0)
    w = mg.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    opt = optim.Adam([w], lr=0.01, amsgrad=True)
    w.grad = rng.standard_normal((3, 2))
    opt.step()
    model = {
        "weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
        "bias_ih_l0": rng.standard_normal(8),  # float64
        "embedding.weight": rng.standard_normal((4, 2)).astype(np.float16),
        "counts": np.arange(5, dtype=np.int64),
        "small": np.array([-1, 2], dtype=np.int32),
        "mask": np.array([True, False]),
        "bytes": np.arange(3, dtype=np.uint8),
        "empty": np.zeros((0, 3)),
        "zero_d": np.array(2.5),
        "fortran": np.asfortranarray(rng.standard_normal((2, 3))),
    }
    return {
        "model": model,
        "optim": opt.state_dict(),
        "step": 100,
        "big": 2**70,
        "lr": 0.1,
        "specials": [float("inf"), -float("inf"), float("nan"), -0.0, 1e-310],
        "flags": (True, False, None),
        "name": "char-rnn \u00e9\u00e8",
        "int_and_str_keys": {0: "zero", "0": "string zero", -3: [1, 2]},
        "np_scalars": [np.float32(1.5), np.int64(-7), np.bool_(True), np.float64(0.1)],
        "tensor": mg.Tensor(np.ones(2, dtype=np.float64), requires_grad=True),
        "empty_containers": [[], (), {}],
        "nested": [{"a": (1, [2.0, {"b": np.eye(2)}])}],
    }


def test_round_trip_nested(tmp_path):
    obj = nested_checkpoint()
    path = tmp_path / "ck.npz"
    mg.save(obj, path)
    back = mg.load(path)
    assert_same(obj, back)
    assert back["optim"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(back["optim"]["state"]) == {0}


def test_assert_same_can_fail():
    # the round-trip test above relies on assert_same noticing differences
    for a, b in [
        ({"a": np.zeros(2)}, {"a": np.zeros(2, np.float32)}),
        ((1,), [1]),
        ({0: 1}, {"0": 1}),
        ({"a": 1}, {"a": 1.0}),
        ([np.ones(2)], [np.zeros(2)]),
    ]:
        with pytest.raises(AssertionError):
            assert_same(a, b)


def test_writes_exactly_the_given_path_and_accepts_str(tmp_path):
    target = tmp_path / "model.ckpt"
    mg.save({"w": np.ones(2)}, str(target))
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]  # no .npz appended, no temp file left
    assert_same(mg.load(str(target)), {"w": np.ones(2)})
    mg.save({"w": np.zeros(3)}, pathlib.PurePath(target))  # overwrite, PathLike
    assert_same(mg.load(target), {"w": np.zeros(3)})
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]


def test_plain_numpy_can_read_it_without_pickle(tmp_path):
    obj = nested_checkpoint()
    path = tmp_path / "ck.npz"
    mg.save(obj, path)
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["model/weight_ih_l0"], obj["model"]["weight_ih_l0"])
        np.testing.assert_array_equal(
            z["optim/state/0/exp_avg"], obj["optim"]["state"][0]["exp_avg"]
        )
        assert z["__minigrad_manifest__"].dtype == np.uint8
        for name in z.files:
            assert not z[name].dtype.hasobject
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            assert name.endswith(".npy")
            assert b"pickle" not in zf.read(name)[:128].lower()


def test_load_uses_allow_pickle_false(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.ones(2)}, path)
    seen = []
    real_load = np.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("allow_pickle"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    mg.load(path)
    assert seen == [False]


def test_colliding_and_reserved_names(tmp_path):
    obj = {
        "a/b": np.ones(1),
        "a": {"b": np.zeros(1)},
        "file": np.full(1, 2.0),
        "allow_pickle": np.full(1, 3.0),
        "__minigrad_manifest__": np.full(1, 4.0),
        "": np.full(1, 5.0),
        "x.npy": np.full(1, 6.0),
    }
    path = tmp_path / "ck.npz"
    mg.save(obj, path)
    assert_same(mg.load(path), obj)


def test_state_dict_of_a_model_round_trips_into_optimizer(tmp_path):
    rng = np.random.default_rng(3)
    ws = [mg.Tensor(rng.standard_normal(s), requires_grad=True) for s in [(4, 3), (4,)]]
    opt = optim.RMSprop(ws, lr=0.01, momentum=0.9, centered=True)
    for _ in range(2):
        for w in ws:
            w.grad = rng.standard_normal(w.shape)
        opt.step()
    path = tmp_path / "ck.npz"
    mg.save({"optim": opt.state_dict(), "params": [w.data for w in ws]}, path)
    ck = mg.load(path)
    ws2 = [mg.Tensor(d, requires_grad=True) for d in ck["params"]]
    opt2 = optim.RMSprop(ws2, lr=0.01, momentum=0.9, centered=True)
    opt2.load_state_dict(ck["optim"])
    assert_same(opt.state_dict(), opt2.state_dict())


# ----- errors -------------------------------------------------------------------------------------
def test_foreign_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a checkpoint\n")
    with pytest.raises(ValueError, match=r"notes\.txt.*not a zip"):
        mg.load(path)
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match=r"a\.npy.*not a zip"):
        mg.load(npy)


def test_truncated_file(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save(nested_checkpoint(), path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}"):
            mg.load(bad)


def test_corrupted_member(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.arange(100.0)}, path)
    data = bytearray(path.read_bytes())
    i = data.index(b"\x93NUMPY")  # the first member's .npy header
    data[i : i + 6] = b"XXXXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"ck\.npz"):
        mg.load(path)


def test_npz_without_manifest(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(2))
    with pytest.raises(ValueError, match=r"plain\.npz.*no '__minigrad_manifest__'.*w"):
        mg.load(path)


def _rewrite(path, out, drop=(), manifest=None):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name in drop:
                continue
            data = src.read(name)
            if manifest is not None and name == "__minigrad_manifest__.npy":
                import io

                buf = io.BytesIO()
                np.save(buf, np.frombuffer(manifest, dtype=np.uint8))
                data = buf.getvalue()
            dst.writestr(name, data)


def test_manifest_referencing_missing_array(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"model": {"w": np.ones(2), "b": np.zeros(1)}}, path)
    bad = tmp_path / "missing.npz"
    _rewrite(path, bad, drop={"model/b.npy"})
    with pytest.raises(ValueError, match=r"missing\.npz.*'model/b'.*missing"):
        mg.load(bad)


@pytest.mark.parametrize(
    "manifest,match",
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b'{"format": "something else", "tree": {}}', "not a 'minigrad.save' manifest"),
        (b'{"format": "minigrad.save", "version": 99, "tree": {"t": "none"}}', "version 99"),
        (
            b'{"format": "minigrad.save", "version": 1, "tree": {"t": "weird"}}',
            "unknown entry type",
        ),
        (b'{"format": "minigrad.save", "version": 1, "tree": {"t": "int", "v": "x"}}', "malformed"),
        (
            b'{"format": "minigrad.save", "version": 1, "tree": {"t": "dict", "items": [[1]]}}',
            "malformed",
        ),
    ],
)
def test_bad_manifest(tmp_path, manifest, match):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.ones(2)}, path)
    bad = tmp_path / "bad.npz"
    _rewrite(path, bad, manifest=manifest)
    with pytest.raises(ValueError, match=match):
        mg.load(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        mg.load(tmp_path / "nope.npz")
    assert issubclass(FileNotFoundError, OSError)


def test_unsavable_objects(tmp_path):
    path = tmp_path / "ck.npz"
    with pytest.raises(TypeError, match=r"object array.*'a/b'"):
        mg.save({"a": {"b": np.array([1, "x"], dtype=object)}}, path)
    with pytest.raises(TypeError, match=r"type set at 'a/0'"):
        mg.save({"a": [{1, 2}]}, path)
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        mg.save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        mg.save({True: 3}, path)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="circular"):
        mg.save(loop, path)
    with pytest.raises(TypeError, match="path"):
        mg.save({}, 3)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_shared_subobjects_are_fine(tmp_path):
    a = np.ones(2)
    part = {"x": a}
    obj = {"p": part, "q": part, "r": [a, a]}
    mg.save(obj, tmp_path / "ck.npz")
    assert_same(mg.load(tmp_path / "ck.npz"), obj)


def test_manifest_is_json(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"step": 3, "w": np.ones(1)}, path)
    with np.load(path, allow_pickle=False) as z:
        manifest = json.loads(z["__minigrad_manifest__"].tobytes().decode("utf-8"))
    assert manifest["format"] == "minigrad.save"
    assert manifest["tree"]["t"] == "dict"


# ----- keys that must not collide ---------------------------------------------------------
def test_keys_differing_after_a_nul_byte_stay_apart(tmp_path):
    obj = {"w\0a": np.ones(2), "w\0b": np.zeros(3)}
    path = tmp_path / "ck.npz"
    mg.save(obj, path)
    assert_same(mg.load(path), obj)


def test_a_key_ending_in_npy_does_not_read_its_neighbour(tmp_path):
    obj = {"x": np.ones(2), "x.npy": np.full(2, 7.0), "x.npy.npy": np.full(1, 3.0)}
    path = tmp_path / "ck.npz"
    mg.save(obj, path)
    assert_same(mg.load(path), obj)


def test_round_trip_of_arbitrary_unicode_keys(tmp_path_factory):
    from hypothesis import given
    from hypothesis import strategies as st

    key = st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [
                "",
                "/",
                "\0",
                ".npy",
                "x.npy",
                "a/b",
                "a%2Fb",
                "#1",
                "__minigrad_manifest__",
                "file",
                "..",
                "\udc80",
            ]
        ),
        st.integers(-3, 3),
    )
    leaf = st.integers(0, 3).map(lambda n: np.arange(n, dtype=np.float32))
    tree = st.recursive(leaf, lambda kids: st.dictionaries(key, kids, max_size=4), max_leaves=12)
    path = tmp_path_factory.mktemp("keys") / "ck.npz"

    @given(tree)
    def check(obj):
        mg.save({"root": obj}, path)
        assert_same(mg.load(path), {"root": obj})

    check()


# ----- a budget for loading ----------------------------------------------------------------
def _edit_manifest(path, out, edit):
    with np.load(path, allow_pickle=False) as z:
        manifest = json.loads(z["__minigrad_manifest__"].tobytes().decode("utf-8"))
    edit(manifest)
    _rewrite(path, out, manifest=json.dumps(manifest).encode("utf-8"))


def test_a_member_referenced_twice_is_refused(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"a": np.ones(4), "b": np.zeros(4)}, path)
    bad = tmp_path / "twice.npz"

    def edit(m):
        m["tree"]["items"][1][1]["key"] = m["tree"]["items"][0][1]["key"]

    _edit_manifest(path, bad, edit)
    with pytest.raises(ValueError, match=r"twice\.npz.*more than once"):
        mg.load(bad)


def test_max_bytes_refuses_before_reading_any_array(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    mg.save({"a": np.ones(1000), "b": np.zeros(1000)}, path)  # 16,000 bytes of arrays
    assert_same(mg.load(path, max_bytes=16_000), {"a": np.ones(1000), "b": np.zeros(1000)})
    reads = []
    real = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(
        np.lib.npyio.NpzFile, "__getitem__", lambda self, k: reads.append(k) or real(self, k)
    )
    with pytest.raises(ValueError, match=r"16000 bytes.*max_bytes=15999"):
        mg.load(path, max_bytes=15_999)
    assert [k for k in reads if k != "__minigrad_manifest__"] == []
    with pytest.raises(ValueError, match="max_bytes"):
        mg.load(path, max_bytes=-1)


def test_the_default_budget_is_documented_and_none_lifts_it(tmp_path):
    import inspect

    assert inspect.signature(mg.load).parameters["max_bytes"].default == 4 * 2**30
    assert "max_bytes" in mg.load.__doc__ and "4 GiB" in mg.load.__doc__
    path = tmp_path / "ck.npz"
    mg.save({"a": np.ones(8)}, path)
    with pytest.raises(ValueError, match="64 bytes"):
        mg.load(path, max_bytes=63)
    assert_same(mg.load(path, max_bytes=None), {"a": np.ones(8)})


def test_a_very_deep_manifest_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.ones(1)}, path)
    bad = tmp_path / "deep.npz"
    depth = 100_000
    manifest = (
        b'{"format": "minigrad.save", "version": 1, "tree": '
        + b'{"t": "list", "items": [' * depth
        + b'{"t": "none"}'
        + b"]}" * depth
        + b"}"
    )
    _rewrite(path, bad, manifest=manifest)
    with pytest.raises(ValueError, match="deep"):
        mg.load(bad)
    manifest = (
        b'{"format": "minigrad.save", "version": 1, "tree": '
        + b'{"t": "list", "items": [' * 900
        + b'{"t": "none"}'
        + b"]}" * 900
        + b"}"
    )
    _rewrite(path, bad, manifest=manifest)
    with pytest.raises(ValueError, match="deep"):
        mg.load(bad)


def test_saving_a_very_deep_structure_is_refused_clearly(tmp_path):
    obj = []
    for _ in range(5000):
        obj = [obj]
    with pytest.raises(ValueError, match="deep"):
        mg.save(obj, tmp_path / "ck.npz")
    assert os.listdir(tmp_path) == []


# ----- interrupted saves --------------------------------------------------------------------
def test_save_uses_a_fresh_temporary_name_each_time(tmp_path, monkeypatch):
    from minigrad import serialization

    target = tmp_path / "ck.npz"
    # litter a killed process might have left, under every name the old scheme would pick
    for n in range(50):
        (tmp_path / f"ck.npz.{os.getpid()}-{n}.tmp").write_bytes(b"partial")
    for n in range(3):
        mg.save({"n": n}, target)
        assert mg.load(target) == {"n": n}
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o666 & ~serialization._UMASK)


def test_a_failed_save_leaves_the_old_file_and_no_litter(tmp_path, monkeypatch):
    target = tmp_path / "ck.npz"
    mg.save({"w": np.ones(3)}, target)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        mg.save({"w": np.zeros(3)}, target)
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert_same(mg.load(target), {"w": np.ones(3)})


def test_save_fsyncs_before_renaming(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    mg.save({"w": np.ones(3)}, tmp_path / "ck.npz")
    assert events[:2] == ["fsync", "replace"]
