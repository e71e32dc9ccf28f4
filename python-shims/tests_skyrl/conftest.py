"""SkyRL tests run in their own venv (.venv-skyrl: skyrl 0.3.0 pins transformers <= 5.8) and share tests/support.py."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support import start_sidecar, write_reader_fixture  # noqa: E402


@pytest.fixture(scope="session")
def reader_fixture(tmp_path_factory):
    return write_reader_fixture(str(tmp_path_factory.mktemp("reader")))


@pytest.fixture(scope="session")
def sidecar(reader_fixture):
    s = start_sidecar(reader_fixture.packs_dir)
    yield s
    assert s.stop() == 0
