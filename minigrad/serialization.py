"""save/load of state dicts (and nested checkpoints) as .npz files, never pickling.

    minigrad.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": 100}, "ck.npz")
    ck = minigrad.load("ck.npz")

The file is an ordinary ``np.savez`` archive: one ``.npy`` member per array, named by its path in
the nested structure joined with "/" (``model/weight_ih_l0``, ``optim/state/0/exp_avg``), so
``np.load(path, allow_pickle=False)`` opens it too. Characters other than ASCII letters, digits,
"_", "-", "." and space are written as %XX (UTF-8 bytes), a name ending in ".npy" gets its last
dot escaped, and a name already taken gets "#1", "#2", ...: every array has a member of its own,
whatever the keys. The keys themselves are kept exactly in the manifest, one extra member
``__minigrad_manifest__`` (JSON stored as a uint8 array), which records the structure: dicts (str
or int keys), lists, tuples, None, bool, int, float, str, numpy scalars, ndarrays and Tensors.
``load`` rebuilds the structure from it, with the same types, dtypes and key types.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save", "load"]

MANIFEST_KEY = "__minigrad_manifest__"
FORMAT = "minigrad.save"
VERSION = 1
SEP = "/"
MAX_DEPTH = 200  # containers nested deeper than this are refused by save and load
DEFAULT_MAX_BYTES = 4 << 30  # load's default budget: 4 GiB of arrays
_NAME_LEN = 200  # escaped member names are cut to this many characters (then made unique)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-. ")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_RESERVED = {MANIFEST_KEY, "file", "allow_pickle"}  # np.savez's own keyword names


def _fspath(path, what):
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"{what}() needs a path (str or os.PathLike), got {type(path).__name__}"
        ) from None


# ----- save ------------------------------------------------------------------------------
class _Encoder:
    def __init__(self):
        self.arrays = {}
        self.active = set()  # ids of the containers on the current path (cycle check)

    def name_for(self, path):
        base = SEP.join(_escape(str(k)) for k in path)[:_NAME_LEN] or "_root"
        if base.endswith(".npy"):  # np.load would find "x.npy" as the member of key "x"
            base = base[:-4] + "%2Enpy"
        name, n = base, 1
        while name in self.arrays or name in _RESERVED:
            name = f"{base}#{n}"
            n += 1
        return name

    def encode(self, obj, path):
        from .tensor import Tensor

        where = SEP.join(str(k) for k in path) or "<root>"
        if len(path) > MAX_DEPTH:
            raise ValueError(
                f"cannot save a structure nested more than {MAX_DEPTH} levels deep "
                f"(at {where[:200]!r}...)"
            )
        if obj is None:
            return {"t": "none"}
        if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
            return {"t": "scalar", "key": self.add_array(np.asarray(obj), path, where)}
        if isinstance(obj, bool):
            return {"t": "bool", "v": obj}
        if isinstance(obj, int):
            return {"t": "int", "v": int(obj)}
        if isinstance(obj, float):
            return {"t": "float", "v": repr(float(obj))}  # repr round-trips, also nan/inf
        if isinstance(obj, str):
            return {"t": "str", "v": obj}
        if isinstance(obj, Tensor):
            name = self.add_array(obj.data, path, where)
            return {"t": "tensor", "key": name, "requires_grad": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"t": "array", "key": self.add_array(obj, path, where)}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self.active:
                raise ValueError(f"cannot save a circular structure (at {where!r})")
            self.active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = []
                    for k, v in obj.items():
                        if isinstance(k, (bool, np.bool_)) or not isinstance(
                            k, (str, int, np.integer)
                        ):
                            raise TypeError(
                                f"dict keys must be str or int to be saved, got "
                                f"{k!r} ({type(k).__name__}) at {where!r}"
                            )
                        k = k if isinstance(k, str) else int(k)
                        items.append([k, self.encode(v, path + [k])])
                    return {"t": "dict", "items": items}
                kind = "tuple" if isinstance(obj, tuple) else "list"
                return {"t": kind, "items": [self.encode(v, path + [i]) for i, v in enumerate(obj)]}
            finally:
                self.active.discard(id(obj))
        raise TypeError(
            f"cannot save an object of type {type(obj).__name__} at {where!r}; "
            "supported: dict, list, tuple, ndarray, Tensor, numpy scalars, int, "
            "float, bool, str, None"
        )

    def add_array(self, arr, path, where):
        if arr.dtype.hasobject:
            raise TypeError(
                f"cannot save an object array (dtype {arr.dtype}) at {where!r} without pickling"
            )
        name = self.name_for(path)
        self.arrays[name] = arr
        return name


def _escape(key):
    return "".join(
        c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in key
    )


def save(obj, path):
    """Write ``obj`` (a state dict or nested dicts/lists of arrays and numbers) to ``path``.

    Exactly ``path`` is written (no ".npz" is appended). The file is written next to it under a
    fresh temporary name (``tempfile.mkstemp``), flushed to disk (fsync) and renamed over
    ``path`` in one step, so a reader sees the old file or the new one, never a partial one. An
    exception removes the temporary file; a process killed outright (``kill -9``) may leave one
    (``.<name>.<random>.tmp``), which never blocks a later save and can be deleted.
    """
    path = _fspath(path, "save")
    enc = _Encoder()
    tree = enc.encode(obj, [])
    manifest = json.dumps(
        {"format": FORMAT, "version": VERSION, "tree": tree}, ensure_ascii=True, allow_nan=False
    )
    arrays = dict(enc.arrays)
    arrays[MANIFEST_KEY] = np.frombuffer(manifest.encode("ascii"), dtype=np.uint8)
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            fd = None
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----- load ------------------------------------------------------------------------------
_SCALARS = {"none", "bool", "int", "float", "str"}
_ARRAYS = {"array", "scalar", "tensor"}


class CheckpointError(ValueError):
    """A file that is not a (readable) minigrad checkpoint."""


class _Decoder:
    def __init__(self, archive, path):
        self.z = archive
        self.path = path
        self.names = set(archive.files)
        self.unread = set()  # the members the manifest references, each read once

    def fail(self, msg):
        raise CheckpointError(f"{self.path!r}: {msg}")

    def survey(self, tree, max_bytes):
        """Walk the manifest without recursion before reading any array: its depth, that every
        referenced member exists and is referenced once, and the bytes the arrays declare."""
        stack = [(tree, 0)]
        total = 0
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                self.fail(f"the manifest is nested more than {MAX_DEPTH} levels deep")
            if not isinstance(node, dict):
                continue  # decode reports it with its place
            t = node.get("t")
            if t in _ARRAYS:
                key = node.get("key")
                if not isinstance(key, str) or key not in self.names or key == MANIFEST_KEY:
                    self.fail(
                        f"the manifest references array {key!r}, which is missing from "
                        "the archive (damaged or edited file)"
                    )
                if key in self.unread:
                    self.fail(
                        f"the manifest references array {key!r} more than once (save "
                        "never writes that; the file was edited)"
                    )
                self.unread.add(key)
                total += self.declared_bytes(key)
            elif t in ("list", "tuple", "dict") and isinstance(node.get("items"), list):
                for item in node["items"]:
                    if t == "dict":
                        item = item[1] if isinstance(item, list) and len(item) == 2 else None
                    stack.append((item, depth + 1))
        if max_bytes is not None and total > max_bytes:
            self.fail(
                f"its arrays declare {total} bytes, more than max_bytes={max_bytes}; "
                "pass a larger max_bytes (or None) to load a file this large"
            )

    def declared_bytes(self, key):
        """Bytes the .npy header of a member declares, read without reading its data."""
        try:
            with self.z.zip.open(key + ".npy") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(
                f"{self.path!r}: cannot read the header of array {key!r} ({type(e).__name__}: {e})"
            ) from e
        return math.prod(shape) * dtype.itemsize

    def read(self, key):
        if key not in self.unread:
            self.fail(
                f"the manifest references array {key!r} more than once (save never "
                "writes that; the file was edited)"
            )
        self.unread.discard(key)
        try:
            return self.z[key]
        except Exception as e:  # zlib/zip/format errors from a damaged member
            raise CheckpointError(
                f"{self.path!r}: cannot read array {key!r} ({type(e).__name__}: {e})"
            ) from e

    def decode(self, node, where="<root>"):
        if not isinstance(node, dict) or "t" not in node:
            self.fail(f"malformed manifest entry at {where!r}: {node!r:.80}")
        t = node["t"]
        try:
            if t == "none":
                return None
            if t == "bool":
                return _typed(node["v"], bool)
            if t == "int":
                return _typed(node["v"], int)
            if t == "float":
                return float(_typed(node["v"], str))
            if t == "str":
                return _typed(node["v"], str)
            if t == "array":
                return self.read(node["key"])
            if t == "scalar":
                arr = self.read(node["key"])
                if arr.shape != ():
                    self.fail(f"scalar at {where!r} is stored with shape {arr.shape}")
                return arr[()]
            if t == "tensor":
                from .tensor import Tensor

                return Tensor(
                    self.read(node["key"]),
                    requires_grad=_typed(node.get("requires_grad", False), bool),
                )
            if t in ("list", "tuple"):
                items = [
                    self.decode(v, f"{where}{SEP}{i}")
                    for i, v in enumerate(_typed(node["items"], list))
                ]
                return tuple(items) if t == "tuple" else items
            if t == "dict":
                out = {}
                for item in _typed(node["items"], list):
                    if (
                        not isinstance(item, list)
                        or len(item) != 2
                        or isinstance(item[0], bool)
                        or not isinstance(item[0], (str, int))
                    ):
                        self.fail(f"malformed dict item in the manifest at {where!r}")
                    out[item[0]] = self.decode(item[1], f"{where}{SEP}{item[0]}")
                return out
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            self.fail(f"malformed manifest entry at {where!r} ({type(e).__name__}: {e})")
        self.fail(f"unknown entry type {t!r} in the manifest at {where!r}")


def _typed(value, typ):
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise TypeError(f"expected {typ.__name__}, got {type(value).__name__}")
    return value


def load(path, max_bytes=DEFAULT_MAX_BYTES):
    """Read a file written by ``save`` and rebuild the structure (np.load, allow_pickle=False).

    A file that is not a zip archive (truncated, or another format), a zip/.npz without the
    minigrad manifest, or a manifest naming missing arrays raises ValueError naming the file.

    ``max_bytes`` (default 4 GiB) bounds the total size of the arrays: the sizes their headers
    declare are added up before any array is read, and a file declaring more is refused, so a
    small hostile file cannot make ``load`` allocate gigabytes. Pass a larger number, or None
    for no limit, to load larger checkpoints. Each array member is read once; a manifest that
    references one member twice is refused. A manifest nested more than 200 levels deep is
    refused too.
    """
    path = _fspath(path, "load")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0
    ):
        raise ValueError(f"max_bytes must be a non-negative int or None, got {max_bytes!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint file: {path!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a minigrad checkpoint: not a zip (.npz) archive "
            f"(the file is truncated or in another format; {os.path.getsize(path)} "
            "bytes)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(
            f"{path!r}: cannot open as an .npz archive ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path!r} is not a minigrad checkpoint (np.load read it as "
            f"{type(archive).__name__}, not an .npz archive)"
        )
    with archive:
        if MANIFEST_KEY not in archive.files:
            shown = ", ".join(sorted(archive.files)[:5]) or "none"
            raise ValueError(
                f"{path!r} is an .npz archive but not a minigrad checkpoint: it has "
                f"no {MANIFEST_KEY!r} entry (arrays: {shown}); open plain .npz "
                "files with np.load"
            )
        dec = _Decoder(archive, path)
        raw = _read_manifest(archive, path)
        dec.survey(raw["tree"], max_bytes)
        return dec.decode(raw["tree"])


def _read_manifest(archive, path):
    try:
        raw = archive[MANIFEST_KEY]
    except Exception as e:
        raise ValueError(f"{path!r}: cannot read the manifest ({type(e).__name__}: {e})") from e
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(
            f"{path!r}: the manifest must be a 1-d uint8 array, got dtype "
            f"{raw.dtype} and shape {raw.shape}"
        )
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r}: the manifest is not valid UTF-8 JSON ({e})") from e
    except RecursionError:
        raise CheckpointError(
            f"{path!r}: the manifest is nested too deeply to read (at most {MAX_DEPTH} levels)"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "tree" not in manifest:
        raise ValueError(f"{path!r}: the manifest is not a {FORMAT!r} manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{path!r}: manifest version {version!r} is newer than this minigrad "
            f"reads (up to {VERSION})"
        )
    return manifest
