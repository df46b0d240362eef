"""save/load of state dicts as .npz (filled in by the serialization work)."""


def save(obj, path):
    raise NotImplementedError


def load(path):
    raise NotImplementedError
