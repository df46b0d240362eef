"""The adversarial group: inputs and situations a hostile or careless user creates.

Every test here is marked ``adversarial`` (``pytest -m adversarial`` runs just them, ``-m "not
adversarial"`` skips them). By default (and in CI) each runs a reduced form, well under a minute
for the whole group; ``MINIGRAD_ADVERSARIAL=full`` runs the full form (every case of the
bad-input matrix, more kills, more threads and steps).
"""

import os

import pytest

FULL = os.environ.get("MINIGRAD_ADVERSARIAL", "") == "full"


def pytest_configure(config):
    config.addinivalue_line("markers", "adversarial: the adversarial group (tests/adversarial)")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.adversarial)
