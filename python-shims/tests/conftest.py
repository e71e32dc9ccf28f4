from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support import REPO, Sidecar, start_sidecar

# Two cores: keep torch from oversubscribing them while the sidecar's onnxruntime threads run too.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def parity_dir(tmp_path_factory) -> str:
    """The repo's parity fixtures, generated fresh by scripts/parity/make_parity_fixtures.py (seed 0).

    Generated into a temp dir rather than read from test/fixtures/parity, which `npm test` rewrites: the
    script is deterministic, so the content is the same, and a concurrent `npm test` cannot race this suite.
    """
    out = str(tmp_path_factory.mktemp("parity"))
    script = os.path.join(REPO, "scripts", "parity", "make_parity_fixtures.py")
    subprocess.run([sys.executable, script, "--out", out], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def parity_cases(parity_dir) -> list[dict]:
    with open(os.path.join(parity_dir, "cases.json")) as f:
        return json.load(f)["cases"]


@pytest.fixture(scope="session")
def parity_sidecar(parity_dir) -> Sidecar:
    sidecar = start_sidecar(os.path.join(parity_dir, "packs"))
    yield sidecar
    assert sidecar.stop() == 0, "sidecar did not shut down cleanly on SIGTERM"


@pytest.fixture()
def bundled_sidecar() -> Sidecar:
    """A sidecar of its own (with the bundled synthetic pack) that a test may freeze or stop."""
    sidecar = start_sidecar(os.path.join(REPO, "examples", "packs"))
    yield sidecar
    sidecar.stop()
