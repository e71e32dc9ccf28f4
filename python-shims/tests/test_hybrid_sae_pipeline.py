"""pipelines/hybrid/run.py at toy size: sparsify trains a TopK SAE on a tiny Qwen3.5's layer-1 residual,
`mechreward pack build` writes the pack and runs stage gate 1, and the real server (no --allow-unvalidated)
scores held-out responses exactly as sparsify's own encode does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import REPO


def test_sparsify_sae_on_a_hybrid_to_a_served_pack(tmp_path):
    out = tmp_path / "hybrid"
    run = subprocess.run([sys.executable, os.path.join(REPO, "pipelines", "hybrid", "run.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    pack = out / "packs" / "toy-qwen3_5-l1"
    sae_cfg = json.loads((pack / "sae" / "layers.1" / "cfg.json").read_text())
    assert sae_cfg["activation"] == "topk" and sae_cfg["k"] == 8 and sae_cfg["d_in"] == 64  # sparsify's layout
    assert (pack / "sae" / "layers.1" / "sae.safetensors").is_file()
    pack_json = json.loads((pack / "pack.json").read_text())
    assert pack_json["layer"] == 1 and pack_json["discovery"]["method"].startswith("effect size")
    g1 = report["g1"]
    assert g1["verdict"] == "PASS" and g1["n"] == 200 and g1["rho"] >= 0.3
    assert report["server"]["responses_scored"] == 40
    assert report["server"]["worst_relative_diff_vs_sparsify_encode"] <= 1e-5
    # Served as a validated pack (no --allow-unvalidated), on sparsify's SAE, at the pack's layer.
    assert report["server"]["served_layer"] == 1 and report["server"]["served_d_sae"] == 256
    assert report["server"]["unvalidated_warning"] is False
    print(f"\nG1 rho {g1['rho']:.3f} (n {g1['n']}); server vs sparsify encode "
          f"{report['server']['worst_relative_diff_vs_sparsify_encode']:.1e}; timings {report['timings']}")
