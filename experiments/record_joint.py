"""Collect the staged joint model's record into vidlab/zoo/shapes-tiny/joint_stages.json (for the model card).

python experiments/record_joint.py --run-dir checkpoints/joint --vae-before before.json --vae-after after.json \
    --probe anchored=probe.json --shipped shipped.json --notes notes.json \
    --continued checkpoints/joint2:clips="clips, centre pool"

Reads the decoder fine-tune's and each stage's progress.json (steps, minutes, losses) and
monitor.jsonl (the numbers measured while it trained; `--continued`: a stage carried on in another run
folder from the previous stage's export, listed after the others under its own label), the VAE round trips before and after the
decoder fine-tune (`wan_ladder.vae_reconstruction`), the memorisation probe's outputs
(`probe_memorise.py`), the shipped model's `eval_motion_run.py` output, the shape study
(`shape_capacity.py`: token size, depth, width at equal minutes), arms at equal minutes from the shipped
model (`--capacity-study`, `--corner-study`), the frame-shift study (arms of the
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
    parser.add_argument("--capacity-study", nargs="*", default=[], metavar="LABEL=[RUN_DIR:]SELECTION_JSON",
                        help="arms continuing the shipped model at equal minutes: each arm's run folder (its clips "
                             "stage; none: the model measured as it is) and its choose_guidance.py output")
    parser.add_argument("--corner-study", nargs="*", default=[], metavar="LABEL=[RUN_DIR:]SELECTION_JSON",
                        help="arms for squares, as --capacity-study; with --corner-shapes and --shape-word per label")
    parser.add_argument("--corner-shapes", nargs="*", default=[], metavar="LABEL=SHAPE_ERRORS_JSON",
                        help="experiments/shape_errors.py output of a --corner-study arm (one per split)")
    parser.add_argument("--shape-word", nargs="*", default=[], metavar="LABEL=JSON",
                        help="experiments/shape_word_cells.py output of a --corner-study arm")
    parser.add_argument("--where-squares", nargs="*", default=[], metavar="LABEL=JSON",
                        help="experiments/shape_where_lost.py --shape square output of a --corner-study arm")
    parser.add_argument("--word-states", nargs="*", default=[], metavar="LABEL=JSON",
                        help="experiments/shape_word_states.py output of a --corner-study arm")
    parser.add_argument("--notes", default=None, help="JSON list of lines")
    parser.add_argument("--update", action="store_true",
                        help="add to the recorded joint_stages.json instead of writing it anew (its runs need not "
                             "be on this machine): --continued stages and --notes appended, --commands merged, "
                             "every other record given replaced, the rest kept")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    read = lambda path: json.loads(Path(path).read_text()) if path else None  # noqa: E731
    stages = [] if args.update else [r for s in STAGES if (r := stage_row(run_dir, s))]
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
           "shift_study": shift_study(parser, args), "guidance": read(args.guidance), "notes": read(args.notes) or [],
           "capacity_study": arm_study(parser, args.capacity_study, "--capacity-study"),
           "corner_study": corner_study(parser, args)}
    target = ZOO_PATH / "joint_stages.json"
    if args.update:
        out = updated(json.loads(target.read_text()), out)
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(target)


def updated(old: dict, new: dict) -> dict:
    """The recorded `old` with `new` added: stages and notes appended, commands merged, what `new` holds replaced."""
    out = dict(old)
    out["stages"] = old["stages"] + new["stages"]
    out["commands"] = {**old["commands"], **new["commands"]}
    out["notes"] = old.get("notes", []) + new["notes"]
    vae = dict(old.get("vae", {}))
    vae.update({k: v for k, v in new["vae"].items() if k != "more" and v})
    vae["more"] = {**vae.get("more", {}), **new["vae"]["more"]}
    out["vae"] = vae
    out["probe"] = {**old.get("probe", {}), **new["probe"]}
    replaced = ("shipped", "shape_study", "shift_study", "guidance", "capacity_study", "corner_study")
    out.update({k: new[k] for k in replaced if new.get(k)})
    return out


def arm_study(parser, items: list[str], flag: str) -> dict | None:
    """Per arm (`LABEL=[RUN_DIR:]SELECTION_JSON`): its transformer's blocks, feed-forward width, patch side and
    parameters, its stage's steps and minutes (`clips`, else `frames`; none for the model measured as it is) and
    its selection-set numbers (`choose_guidance.py`, one setting)."""
    if not items:
        return None
    from diffusers import WanTransformer3DModel
    arms = {}
    for item in items:
        label, spec = item.split("=", 1)
        folder, selection = spec.rsplit(":", 1) if ":" in spec else (None, spec)
        chosen = json.loads(Path(selection).read_text())
        if len(chosen["rows"]) != 1:
            parser.error(f"{flag} {item!r}: measure each arm at one setting (it has {len(chosen['rows'])})")
        stage = folder and next((s for s in ("clips", "frames") if (Path(folder) / s / "progress.json").exists()), None)
        if folder and stage is None:
            parser.error(f"{flag} {item!r}: no clips/ or frames/progress.json under {folder}")
        row = stage_row(Path(folder), stage) if folder else None
        model = Path(chosen["model"]) if Path(chosen["model"]).exists() else ZOO_PATH  # a folder, else the preset's
        config = WanTransformer3DModel.load_config(model / "wan" / "transformer")
        params = sum(p.numel() for p in WanTransformer3DModel.from_config(config).parameters())
        arms[label] = {"stage": stage, "num_layers": config["num_layers"], "ffn_dim": config["ffn_dim"],
                       "patch": config["patch_size"][-1], "params": params,
                       "steps": row and row["steps"], "minutes": row and row["minutes"],
                       "loss_last50": row and row["loss_last50"], "selection": chosen["rows"][0],
                       "selection_seeds": chosen["selection_seeds"], "n": chosen["n"], "n_images": chosen["n_images"]}
    return {"arms": arms}


def corner_study(parser, args) -> dict | None:
    """`arm_study` of the --corner-study arms, each with its shape errors by split (`shape_errors.py`), how far the
    shape word reaches a square's corners (`shape_word_cells.py`), where it loses squares (`shape_where_lost.py`)
    and how far apart its text encoder puts the shape words' captions (`shape_word_states.py`) where given."""
    study = arm_study(parser, args.corner_study, "--corner-study")
    for flag, key, items in (("--corner-shapes", "shape_errors", args.corner_shapes),
                             ("--shape-word", "shape_word", args.shape_word),
                             ("--where-squares", "where_squares", args.where_squares),
                             ("--word-states", "word_states", args.word_states)):
        for label, path in (item.split("=", 1) for item in items):
            if not study or label not in study["arms"]:
                parser.error(f"{flag} {label}=...: {label!r} is no --corner-study arm")
            measured = json.loads(Path(path).read_text())
            if key == "shape_errors":
                study["arms"][label].setdefault(key, {})[measured["split"]] = measured
            else:
                study["arms"][label][key] = measured
    return study


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
