"""The parity fixtures (scripts/parity/make_parity_fixtures.py, served by test/integration/parity.test.ts) can
tell a right engine from a wrong one: scripts/parity/check_f32_engine.py runs a simulated float32 engine, which
must pass every case within the parity tolerance, and twelve deliberately wrong engines (a swapped TopK boundary,
a ReLU'd AbsTopK, a global TopK for group-max, an ignored gate, log_threshold read as the threshold, both twins
of an exact tie kept, ...), each of which must fail somewhere. A fixture change that loses a nasty row kind, or
puts a row within float32 error of a discontinuity, fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from support import REPO

MUTANTS = {"swap_boundary", "selected_for_topk", "no_rescale", "no_b_dec", "ln_ddof0", "ignore_feature_threshold",
           "score_prompt", "relu_abstopk", "topk_for_groupmax", "no_gate", "raw_log_threshold", "keep_ties"}


def test_a_float32_engine_passes_and_every_wrong_engine_fails(parity_dir):
    script = os.path.join(REPO, "scripts", "parity", "check_f32_engine.py")
    done = subprocess.run([sys.executable, script, parity_dir], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    correct = re.findall(r"^correct engine (\S+): (\d+)/(\d+) sequences out of tolerance$", done.stdout, re.M)
    assert [name for name, _, _ in correct] == ["plain", "fold_b_dec"], done.stdout
    assert all(bad == "0" for _, bad, _ in correct), done.stdout
    caught = {name: int(n) for name, n, _ in re.findall(r"^mutant (\S+): caught in (\d+)/(\d+) sequences$", done.stdout, re.M)}
    assert set(caught) == MUTANTS, done.stdout
    assert all(n > 0 for n in caught.values()), done.stdout
    print("\n" + done.stdout)
