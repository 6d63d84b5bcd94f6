"""Collect the staged joint model's record into vidlab/zoo/shapes-tiny/joint_stages.json (for the model card).

python experiments/record_joint.py --run-dir checkpoints/joint --vae-before before.json --vae-after after.json \
    --probe anchored=probe.json --shipped shipped.json --notes notes.json \
    --continued checkpoints/joint2:clips="clips, centre pool"

Reads the decoder fine-tune's and each stage's progress.json (steps, minutes, losses) and
monitor.jsonl (the numbers measured while it trained; `--continued`: a stage carried on in another run
folder from the previous stage's export, listed after the others under its own label), the VAE round trips before and after the
decoder fine-tune (`wan_ladder.vae_reconstruction`), the memorisation probe's outputs
(`probe_memorise.py`), the shipped model's `eval_motion_run.py` output, the shape study
(`shape_capacity.py`: token size, depth, width at equal minutes), the frame-shift study (arms of the
frames stage from one init: `--shift-study`, `--shift-measure`, `--where`), the guidance chosen on a
selection set (`choose_guidance.py`) and a notes file (JSON list of
lines: what the run showed, what is left); `write_model_card.py` turns it into the card's section.
"""
import argparse
import json
from pathlib import Path

from record_wan import stage_row

from vidlab.backends import ZOO_PATH

STAGES = ("wan-decoder", "frames", "clips")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", default="checkpoints/joint")
    parser.add_argument("--commands", nargs="*", default=[], metavar="STAGE=COMMAND",
                        help="the command each stage ran with (the recipe as run)")
    parser.add_argument("--continued", nargs="*", default=[], metavar="RUN_DIR:STAGE=LABEL",
                        help="a stage continued in another run folder, recorded as LABEL")
    parser.add_argument("--vae-before", default=None)
    parser.add_argument("--vae-after", default=None)
    parser.add_argument("--vae-more", nargs="*", default=[], metavar="LABEL=JSON",
                        help="VAE round trips after further decoder fine-tunes (--continued ...:wan-decoder), in order")
    parser.add_argument("--probe", nargs="*", default=[], metavar="MODE=PROBE_JSON")
    parser.add_argument("--shipped", default=None, help="eval_motion_run.py --model shapes-tiny-joint output")
    parser.add_argument("--shape-study", default=None, help="experiments/shape_capacity.py output")
    parser.add_argument("--shift-study", nargs="*", default=[], metavar="LABEL=RUN_DIR",
                        help="frame-shift arms (the frames stage from one init): each arm's run folder; with "
                             "--shift-measure (shape_capacity.py --measure output, same labels) and --where")
    parser.add_argument("--shift-measure", default=None, help="shape_capacity.py --measure output for the arms")
    parser.add_argument("--where", nargs="*", default=[], metavar="LABEL=JSON", help="shape_where_lost.py outputs")
    parser.add_argument("--guidance", default=None, help="experiments/choose_guidance.py output")
    parser.add_argument("--notes", default=None, help="JSON list of lines")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    read = lambda path: json.loads(Path(path).read_text()) if path else None  # noqa: E731
    stages = [r for s in STAGES if (r := stage_row(run_dir, s))]
    for item in args.continued:
        where, label = item.split("=", 1)
        folder, stage = where.rsplit(":", 1)
        row = stage_row(Path(folder), stage)
        if row is None:
            parser.error(f"--continued {item!r}: no {stage}/progress.json under {folder}")
        stages.append({**row, "stage": label, "trained_as": stage})
    out = {"stages": stages,
           "commands": dict(item.split("=", 1) for item in args.commands),
           "vae": {"before": read(args.vae_before), "after": read(args.vae_after),
                   "more": {k: read(v) for k, v in (m.split("=", 1) for m in args.vae_more)}},
           "probe": {k: read(v) for k, v in (p.split("=", 1) for p in args.probe)},
           "shipped": read(args.shipped), "shape_study": read(args.shape_study),
           "shift_study": shift_study(parser, args), "guidance": read(args.guidance), "notes": read(args.notes) or []}
    target = ZOO_PATH / "joint_stages.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(target)


def shift_study(parser, args) -> dict | None:
    """Per arm: its frames stage's steps and minutes, rung 0 (held-out and training combinations), and
    where it loses the shape; a label with no run folder (the init itself) has only the measurements."""
    if not args.shift_measure:
        return None
    measured = json.loads(Path(args.shift_measure).read_text())["measured"]
    where = {k: json.loads(Path(v).read_text()) for k, v in (w.split("=", 1) for w in args.where)}
    runs = dict(item.split("=", 1) for item in args.shift_study)
    arms = {}
    for label, m in measured.items():
        row = stage_row(Path(runs[label]), "frames") if label in runs else None
        if label in runs and row is None:
            parser.error(f"--shift-study {label}={runs[label]}: no frames/progress.json there")
        arms[label] = {"steps": row and row["steps"], "minutes": row and row["minutes"], "rung0": m["rung0"],
                       "rung0_train": m["rung0_train"], "where": where.get(label, {}).get("levels")}
    return {"arms": arms}


if __name__ == "__main__":
    main()
