"""The session fixtures of the suites that run in a venv of their own (tests_verl/, tests_skyrl/).

Each of those suites' conftest.py puts tests/ on sys.path (for this module and support.py) and imports the
fixtures from here, so the two stay one implementation.
"""

from __future__ import annotations

import os

import pytest

from support import start_sidecar, write_reader_fixture

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def reader_fixture(tmp_path_factory):
    """The tiny Qwen2 model folder, its tokenizer and a pack on its layer (support.write_reader_fixture)."""
    return write_reader_fixture(str(tmp_path_factory.mktemp("reader")))


@pytest.fixture(scope="session")
def sidecar(reader_fixture):
    """The real sidecar serving the fixture's pack, shared by the session; it must stop cleanly."""
    s = start_sidecar(reader_fixture.packs_dir)
    yield s
    assert s.stop() == 0
