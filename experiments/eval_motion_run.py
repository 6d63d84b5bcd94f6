"""Measure a motion training run (not yet shipped) on clips and seeds never used in training.

python experiments/eval_motion_run.py --run-dir checkpoints/motion-full --n 48 [--out run_eval.json]
Exports the run into a scratch copy of the zoo (the packaged zoo is not touched), then runs the
same analyzer checks as the model card: direction, attribute constancy, speed, caption sensitivity.
This is how the design choices of the model card's table were compared.
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from eval_zoo import emit
from vidlab.backends import load_backend
from vidlab.backends.presets import ZOO_PATH
from vidlab.training import evaluation as ev
from vidlab.training.motion import export_motion

VIDEO_PARTS = ("motion_adapter", "motion_lora", "video_unet")


def scratch_zoo(run_dir, into: Path) -> Path:
    """A copy of the packaged zoo whose video model is the run's."""
    zoo = into / "zoo"
    shutil.copytree(ZOO_PATH, zoo, ignore=shutil.ignore_patterns(*VIDEO_PARTS))
    export_motion(run_dir, out_dir=zoo)
    return zoo


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        backend = load_backend(str(scratch_zoo(args.run_dir, Path(tmp))), device="cpu")
        result = {"run_dir": args.run_dir,
                  "motion": ev.motion(backend, n=args.n, steps=args.steps, guidance_scale=args.guidance),
                  "caption_sensitivity": ev.caption_sensitivity(backend)}
    result["eval_seconds"] = round(time.time() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
