"""G2, the stage-2 ablation, at small scale on CPU: R0 / R1 / R2 GRPO runs on SmolLM2-135M-Instruct.

    python pipelines/g2/run.py --runs base,R0,R1,R2                 # everything; sidecar started from this checkout
    python pipelines/g2/run.py --runs R2 --sidecar-cwd /other/checkout   # a run with another checkout's sidecar
    python pipelines/g2/run.py --runs R1 --target 127.0.0.1:50051   # a sidecar that is already serving
    python pipelines/g2/run.py --report                             # only rebuild report.json and docs/g2.md
    G2_SMOKE=1 python pipelines/g2/run.py --runs base,R0,R1         # plumbing check: 1 step, 6 questions

Each run starts from the same freshly loaded base model and writes runs/<name>.json; the report and the table
in docs/g2.md are rebuilt from whichever run files exist, so runs can be done in separate invocations.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time

import paths  # noqa: F401  (sets the import path for pipelines/smollm2)
import settings

OUT = os.path.join(paths.HERE, ".cache", "smoke") if settings.SMOKE else paths.HERE
RUNS_DIR = os.path.join(OUT, "runs")
REPORT = os.path.join(OUT, "report.json")
TABLE = os.path.join(OUT, "g2.md") if settings.SMOKE else os.path.join(paths.REPO, "docs", "g2.md")
RUN_NAMES = ("base", "R0", "R1", "R2")
DEFAULT_SIDECAR = "node bin/mechreward.js serve --packs packs"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="", help="comma list of base,R0,R1,R2 to (re)do")
    p.add_argument("--sidecar", default=DEFAULT_SIDECAR,
                   help=f"command starting the sidecar (port flags are appended); default {DEFAULT_SIDECAR!r}")
    p.add_argument("--sidecar-cwd", default=paths.REPO, help="directory to run --sidecar in (default: this checkout)")
    p.add_argument("--sidecar-source", help="free text recorded with the run, e.g. which commit the sidecar was built from")
    p.add_argument("--target", help="host:port of a sidecar already serving the packs (nothing is started)")
    p.add_argument("--r1-pack", default=settings.PACK_R1)
    p.add_argument("--r2-pack", default=settings.PACK_R2)
    p.add_argument("--report", action="store_true", help="only rebuild the report from runs/*.json")
    args = p.parse_args(argv)
    args.runs = [r for r in args.runs.split(",") if r]
    unknown = [r for r in args.runs if r not in RUN_NAMES]
    if unknown:
        p.error(f"--runs: unknown run(s) {unknown}; expected some of {list(RUN_NAMES)}")
    if not args.runs and not args.report:
        p.error("nothing to do: give --runs or --report")
    return args


def git_commit(cwd: str) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def do_run(name: str, base, tokenizer, questions, args) -> dict:
    import torch
    import transformers

    import evaluate
    import sidecar
    import train

    torch.manual_seed(settings.RUN_SEED)
    transformers.set_seed(settings.RUN_SEED)
    record: dict = {"run": name, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    start = time.time()
    if name == "base":
        record["eval"] = evaluate.accuracy(base, tokenizer, questions, name)
    else:
        policy = copy.deepcopy(base)
        pack = {"R0": None, "R1": args.r1_pack, "R2": args.r2_pack}[name]
        if pack is None:
            record.update(train.run(policy, tokenizer, None, None, f"g2-{name}"))
        else:
            server = sidecar.Existing(args.target) if args.target else sidecar.Sidecar(args.sidecar, args.sidecar_cwd)
            with server:
                record["sidecar"] = {"target": server.target, "command": getattr(server, "command", None),
                                     "cwd": args.sidecar_cwd if not args.target else None,
                                     "commit": None if args.target else git_commit(args.sidecar_cwd),
                                     "source": args.sidecar_source}
                record.update(train.run(policy, tokenizer, pack, server.target, f"g2-{name}"))
        record["eval"] = evaluate.accuracy(policy, tokenizer, questions, name)
        del policy
    record["wall_seconds"] = round(time.time() - start, 1)
    return record


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    os.makedirs(RUNS_DIR, exist_ok=True)
    if args.runs:
        import torch
        import trl
        import transformers

        import data
        import model as model_mod

        started = time.time()
        base, tokenizer = model_mod.load()
        torch.set_num_threads(settings.TORCH_THREADS)  # after load(), which sets the pack pipeline's 2
        # The GGUF loader leaves a quantizer attached although every weight is already float32; the Trainer
        # refuses to fine-tune a model marked quantized, so drop the marker (the library's own method).
        if getattr(base, "hf_quantizer", None) is not None:
            base.hf_quantizer.remove_quantization_config(base)
        print(f"model loaded in {time.time() - started:.0f}s", flush=True)
        questions = data.eval_questions()
        for name in args.runs:
            print(f"== {name}", flush=True)
            record = do_run(name, base, tokenizer, questions, args)
            record["settings"] = settings.as_dict()
            record["versions"] = {"torch": torch.__version__, "trl": trl.__version__,
                                  "transformers": transformers.__version__, "python": platform.python_version()}
            record["commit"] = git_commit(paths.REPO)
            with open(os.path.join(RUNS_DIR, f"{name}.json"), "w") as f:
                json.dump(record, f, indent=1)
            ev = record["eval"]
            print(f"== {name}: accuracy {ev['correct']}/{ev['n']} = {ev['accuracy']:.3f}  "
                  f"wall {record['wall_seconds']:.0f}s", flush=True)
    import report

    report.write(RUNS_DIR, REPORT, TABLE)
    print(f"wrote {REPORT} and {TABLE}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
