"""Collect the Wan-style model's ladder into vidlab/zoo/shapes-tiny/wan_ladder.json (for the model card).

python experiments/record_wan.py --run-dir checkpoints/wan --eval label=label.json zoo-clip=clip.json \
    text=text.json --shipped shipped.json --notes notes.json

Reads each stage's progress.json (steps, minutes, losses) and monitor.jsonl (the numbers measured
while it trained), the eval_motion_run.py outputs given, and a notes file (what each rung showed,
written by whoever ran it); `write_model_card.py` turns the result into the card's section.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from vidlab.backends import ZOO_PATH

STAGES = ("wan-vae", "wan-label", "wan-zoo-clip", "wan-text")


def stage_row(run_dir: Path, stage: str) -> dict | None:
    p = run_dir / stage / "progress.json"
    if not p.exists():
        return None
    prog = json.loads(p.read_text())
    monitor = run_dir / stage / "monitor.jsonl"
    rows = [json.loads(line) for line in monitor.read_text().splitlines() if line.strip()] if monitor.exists() else []
    return {"stage": stage, "steps": prog["step"], "minutes": round(prog["seconds"] / 60, 1),
            "loss_first20": round(float(np.mean(prog["losses"][:20])), 4),
            "loss_last50": round(float(np.mean(prog["losses"][-50:])), 4), "monitor": rows}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", default="checkpoints/wan")
    parser.add_argument("--stopped", nargs="*", default=[], metavar="RUN_DIR=WHAT",
                        help="designs stopped by the ladder's rule: their run dir and what they were")
    parser.add_argument("--eval", nargs="*", default=[], metavar="CONDITIONING=EVAL_JSON")
    parser.add_argument("--shipped", default=None, help="eval_motion_run.py --model shapes-tiny output")
    parser.add_argument("--extra", nargs="*", default=[], metavar="KEY=JSON", help="other measurements to keep")
    parser.add_argument("--notes", default=None, help="JSON list of lines: what the ladder showed")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    out = {"stages": [r for s in STAGES if (r := stage_row(run_dir, s))],
           "evals": {k: json.loads(Path(v).read_text()) for k, v in (e.split("=", 1) for e in args.eval)},
           "extra": {k: json.loads(Path(v).read_text()) for k, v in (e.split("=", 1) for e in args.extra)}}
    out["stopped"] = [{"run_dir": d, "design": what,
                       "stages": [r for s in STAGES[1:] if (r := stage_row(Path(d), s))]}
                      for d, what in (item.split("=", 1) for item in args.stopped)]
    if args.shipped:
        out["shipped"] = json.loads(Path(args.shipped).read_text())
    if args.notes:
        out["notes"] = json.loads(Path(args.notes).read_text())
    target = ZOO_PATH / "wan_ladder.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(target)


if __name__ == "__main__":
    main()
