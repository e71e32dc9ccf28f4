"""Every SAE variant that SAELens 6.54.12 and sparsify 1.3.3 save, built with the libraries' own classes and
saved with their own save methods (scripts/parity/library_fixtures.py), is either served by the real sidecar
with the library's own float64 encode() on every token, or refused by `mechreward sae inspect` naming the
field.

Tolerance: per token |reward - library| / max(scale, 1e-3) <= 1e-4, scale = sum_f |w_f f_f| (the rule of
test/integration/parity.test.ts). TopK tokens whose k-th and (k+1)-th pre-activations are tied in float64, or
closer than 1e-4 relative (float32 cannot reliably order them), are counted separately: an exact tie must keep the lower
index (the documented rule; torch.topk's choice among equal values is unspecified), a near tie must match one of
the two orders. Near-tie rows with gaps from 1e-4 to 1e-3 are compared strictly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mechreward_client import RewardClient
from support import REPO, SIDECAR_BIN, start_sidecar

REL_TOL = 1e-4
SCALE_FLOOR = 1e-3
UNRESOLVABLE_GAP = 1e-4  # float32 pre-activations cannot be trusted to order closer values


def _parity_module(name: str):
    """scripts/parity/<name>.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", "parity", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    """The float64 numpy reference that the parity fixtures' expected values come from."""
    return _parity_module("reference")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    lf = _parity_module("library_fixtures")
    out = str(tmp_path_factory.mktemp("library-saes"))
    return lf, out, lf.build(out)


@pytest.fixture(scope="module")
def sidecar(built):
    _, out, _ = built
    s = start_sidecar(os.path.join(out, "packs"))
    yield s
    assert s.stop() == 0


def _reward(acts: np.ndarray, weights: np.ndarray, thresholds: np.ndarray) -> float:
    return float((acts * (acts > thresholds)) @ weights)


def _tie_candidates(lf, case, seq, t) -> tuple[float, float]:
    """Rewards under the lower-index rule and with the k-th and (k+1)-th swapped (float64 pre-activations)."""
    variant, ref = case["variant"], case["ref"]
    h = lf.pre_activations(variant, ref, seq["x"][t : t + 1].astype(np.float64))[0]
    order = np.lexsort((np.arange(h.size), -lf.rank_key(variant, h)))  # descending, ties to the lower index
    w, thr = np.asarray(case["weights"]), np.asarray(case["thresholds"])
    out = []
    for chosen in (order[: lf.K], np.concatenate([order[: lf.K - 1], order[lf.K : lf.K + 1]])):
        dense = np.zeros(h.size)
        dense[chosen] = h[chosen] if variant.rank_abs else np.maximum(h[chosen], 0)
        out.append(_reward(dense[case["features"]], w, thr))
    return out[0], out[1]


def test_every_saved_variant_matches_the_library_encode(built, sidecar):
    lf, _, cases = built
    client = RewardClient(sidecar.target, timeout=60)
    report, strict_tokens, worst_all = [], 0, 0.0
    exact_ties = near_ties = 0
    kinds_seen: set[str] = set()
    for case in cases["exact"]:
        seqs = case["sequences"]
        results = client.score(case["name"], [s["x"] for s in seqs], score_from=0)
        worst = 0.0
        for i, (got, seq) in enumerate(zip(results, seqs)):
            for t in range(len(seq["kinds"])):
                kinds_seen.add(seq["kinds"][t])
                ours = float(got.token_rewards[t])
                scale = max(float(seq["scales"][t]), SCALE_FLOOR)
                expected = float(seq["rewards"][t])
                err = abs(ours - expected) / scale
                if seq["tie"]:
                    kth, gap = seq["tie"][t]
                    if kth > 0 and gap < UNRESOLVABLE_GAP:
                        lower, swapped = _tie_candidates(lf, case, seq, t)
                        if gap == 0:
                            exact_ties += 1
                            assert abs(ours - lower) / scale <= REL_TOL, f"{case['name']} seq {i} token {t}: exact tie not resolved to the lower index ({ours} vs {lower})"
                        else:
                            near_ties += 1
                            assert min(err, abs(ours - lower) / scale, abs(ours - swapped) / scale) <= REL_TOL, f"{case['name']} seq {i} token {t}: near tie matches neither order"
                        continue
                strict_tokens += 1
                worst = max(worst, err)
                assert err <= REL_TOL, f"{case['name']} seq {i} token {t} ({seq['kinds'][t]}): {ours} vs library {expected} (scale {scale})"
        worst_all = max(worst_all, worst)
        report.append(f"| {case['name']} | {case['variant'].note or ''} | {sum(len(s['kinds']) for s in seqs)} | {worst:.1e} |")
    assert {"random", "high_norm", "all_negative", "near_tie"} <= kinds_seen
    assert strict_tokens > 500
    summary = (f"{len(cases['exact'])} variants, {strict_tokens} tokens compared strictly, worst {worst_all:.1e}; "
               f"{exact_ties} exact-tie and {near_ties} unresolvable near-tie tokens counted separately")
    os.makedirs(os.path.join(REPO, "test-reports"), exist_ok=True)
    with open(os.path.join(REPO, "test-reports", "sae-libraries.md"), "w") as f:
        f.write(f"{summary}\n\n| variant | note | tokens | max scaled error (strict tokens) |\n|---|---|---|---|\n" + "\n".join(report) + "\n")
    print(f"\n{summary}")


def _inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", SIDECAR_BIN, "sae", "inspect", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_every_refused_variant_is_refused_by_name(built):
    _, _, cases = built
    assert {r["name"] for r in cases["refused"]} == {"sl-temporal", "sl-matching-pursuit", "sl-train-batchtopk-save", "sl-covariance-whitening", "sl-unknown-field", "sp-unknown-field"}
    # One process for all of them (each node start costs a second or two); each error names its folder.
    done = _inspect(*[r["dir"] for r in cases["refused"]])
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    lines = done.stderr.splitlines()
    assert len(lines) == len(cases["refused"]), done.stderr
    for r in cases["refused"]:
        line = next((l for l in lines if f"{r['dir']}/" in l), None)
        assert line is not None, f"{r['name']}: no error names {r['dir']}"
        assert r["refusal"] in line, f"{r['name']}: {line!r} does not name {r['refusal']!r}"


def test_inspect_shows_what_the_loader_understood(built):
    _, out, _ = built
    expectations = {
        "sp-transcode": {"architecture": "topk", "subtracts_b_dec": False, "k": 8},
        "sl-pre6-topk": {"architecture": "topk", "k": 8},
        "sl-standard-rescale-ignored": {"architecture": "relu", "rescale_by_decoder_norm": False},
        "sl-topk-rescale": {"architecture": "topk", "rescale_by_decoder_norm": True},
        "sl-skip-transcoder": {"architecture": "relu", "subtracts_b_dec": False},
        "sl-gated": {"architecture": "gated"},
        "sl-abstopk-rescale": {"architecture": "abstopk", "k": 8, "rescale_by_decoder_norm": True},
        "sp-groupmax": {"architecture": "groupmax", "k": 8},
        "sl-topk-f64": {"architecture": "topk"},
    }
    dirs = [os.path.join(out, "packs", name, "sae") for name in expectations]
    done = _inspect(*dirs, "--json")
    assert done.returncode == 0, done.stderr
    infos = json.loads(done.stdout)
    for (name, want), info in zip(expectations.items(), infos):
        for key, value in want.items():
            assert info[key] == value, f"{name}: {key} = {info[key]!r}, expected {value!r}"
    assert infos[-1]["tensors"]["W_enc"] == {"dtype": "F64", "shape": [32, 128], "read_as": "float32, narrowed (round to nearest even)"}
    text = _inspect(dirs[-1]).stdout
    assert "F64" in text and "narrowed" in text and "encode:" in text


# ---------------------------------------------------------------------------------------------- the numpy reference

REFERENCE_RTOL = 1e-9  # float64 against float64: only the order of the sums differs


def _merge_twins(dense: np.ndarray, a: int, b: int) -> np.ndarray:
    """Dense codes with two tied features' columns summed: which of the two a ranking encode keeps is a tie-break."""
    out = dense.copy()
    out[:, a] += out[:, b]
    out[:, b] = 0.0
    return out


def test_numpy_reference_encodes_every_saved_variant_as_the_library(built, reference):
    """scripts/parity/reference.py, which computes the parity fixtures' expected values, reads every folder the
    libraries saved (every exact variant above: gated, AbsTopK, group-max, transcoders, BatchTopK and Matryoshka
    inference saves, training saves, pre-6.0 cfgs, f64/f16/bf16 weights) and its encode of every row equals
    the library's own float64 encode(), all d_sae features, near-ties and all-negative rows included."""
    lf, out, cases = built
    worst, rows = 0.0, 0
    for case in cases["exact"]:
        sae = reference.load_sae(os.path.join(out, "packs", case["name"], "sae"))
        for seq in case["sequences"]:
            x = seq["x"].astype(np.float64)
            ours = reference.encode_exact(sae, reference.pre_activations(sae, x), reference.gate_pre_activations(sae, x))
            theirs = lf.library_encode(case["variant"], case["ref"], x)
            ours, theirs = _merge_twins(ours, lf.TIE_A, lf.TIE_B), _merge_twins(theirs, lf.TIE_A, lf.TIE_B)
            scale = np.maximum(np.abs(theirs).max(axis=1, keepdims=True), 1e-9)
            err = float((np.abs(ours - theirs) / scale).max())
            worst, rows = max(worst, err), rows + len(x)
            assert err <= REFERENCE_RTOL, f"{case['name']}: reference differs from the library by {err:.2e} (relative to the row's largest activation)"
    assert rows >= 30 * len(cases["exact"])
    print(f"\nnumpy reference vs library encode: {len(cases['exact'])} variants, {rows} rows, worst {worst:.1e}")


def _library_sae(sae_dir: str):
    from safetensors import safe_open
    from sae_lens import SAE, TrainingSAE
    from sparsify import SparseCoder

    if os.path.exists(os.path.join(sae_dir, "sae.safetensors")):
        return SparseCoder.load_from_disk(sae_dir).double().requires_grad_(False).eval()
    with safe_open(os.path.join(sae_dir, "sae_weights.safetensors"), "np") as f:
        stores_log_threshold = "log_threshold" in f.keys()
    # SAELens 6.54.12 converts log_threshold to threshold in JumpReLUTrainingSAE.process_state_dict_for_loading
    # only; its inference JumpReLUSAE refuses the key. So such a checkpoint is read as the training class.
    loader = TrainingSAE if stores_log_threshold else SAE
    return loader.load_from_disk(sae_dir, dtype="float64").requires_grad_(False).eval()


def _library_dense(obj, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        xt = torch.from_numpy(x)
        if hasattr(obj, "num_latents"):  # sparsify: top indices and values
            out = obj.encode(xt)
            return torch.zeros(len(x), obj.num_latents, dtype=torch.float64).scatter_(-1, out.top_indices, out.top_acts).numpy()
        return obj.encode(xt).numpy()


def test_parity_fixtures_equal_the_library_encode(parity_dir, parity_cases, reference):
    """Every exact-encode case of the parity fixtures that test/integration/parity.test.ts serves (folders
    written by scripts/parity/make_parity_fixtures.py, expected values from reference.py): the libraries' own
    readers load the same folders and their float64 encode() of the same stored rows gives the same token
    rewards and canary values, on every nasty row (near-ties, exact ties between twin features, gate and
    threshold edges, negative AbsTopK values, denormals, huge rows). Twins share one weight, so which of them a
    tie keeps does not move r_t."""
    worst, tokens, packs, libraries = 0.0, 0, set(), {}
    for case in parity_cases:
        pack = reference.load_pack(os.path.join(parity_dir, "packs", case["pack"]))
        if pack.encode != "topk":
            continue  # selected_relu is this project's shortcut, not an encode the libraries have
        if pack.sae_dir not in libraries:
            libraries[pack.sae_dir] = _library_sae(pack.sae_dir)
        packs.add(case["pack"])
        for i, seq in enumerate(case["sequences"]):
            with open(os.path.join(parity_dir, seq["file"]), "rb") as f:
                x = reference.decode_input(f.read(), case["dtype"], case["d_model"])
            dense = _library_dense(libraries[pack.sae_dir], x)
            acts = dense[:, pack.feature_ids]
            kept = np.where(acts > pack.thresholds, acts, 0.0)
            rewards, scales = kept @ pack.weights, np.abs(kept * pack.weights).sum(axis=1)
            sf = seq["score_from"]
            for t in range(sf, seq["num_tokens"]):
                err = abs(rewards[t] - seq["token_rewards"][t]) / max(scales[t], 1e-9)
                worst, tokens = max(worst, err), tokens + 1
                assert err <= REFERENCE_RTOL, f"{case['pack']} {case['dtype']} seq {i} token {t} ({seq['row_kinds'][t]}): library {rewards[t]}, reference {seq['token_rewards'][t]}"
            for c in pack.canaries:
                value, want = float(dense[sf:, c.feature].max()), seq["canary_values"][c.name]
                assert abs(value - want) <= REFERENCE_RTOL * max(abs(want), 1e-9), f"{case['pack']} seq {i} canary {c.name}: library {value}, reference {want}"
    assert {"gated-saelens", "abstopk-saelens", "groupmax-sparsify", "jumprelu-skip-transcoder", "topk-sparsify-transcode", "jumprelu-log-threshold"} <= packs
    print(f"\nparity fixtures vs library encode: {len(packs)} packs, {tokens} scored tokens, worst {worst:.1e}")
