"""verl tests run in their own venv (.venv-verl: verl 0.9 pins transformers < 5.11);
they share tests/support.py and the session fixtures of tests/own_venv_fixtures.py."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from own_venv_fixtures import reader_fixture, sidecar  # noqa: E402,F401  (pytest finds fixtures by name here)
