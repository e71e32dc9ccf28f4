"""Where things are, and the import path: G2 reuses pipelines/smollm2 (model loader, task) as modules."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SMOLLM2 = os.path.join(REPO, "pipelines", "smollm2")
if SMOLLM2 not in sys.path:
    sys.path.append(SMOLLM2)  # after HERE, so pipelines/smollm2/config.py is its own `config`
