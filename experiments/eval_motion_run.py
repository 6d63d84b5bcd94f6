"""Measure a video model's motion on clips and seeds never used in training: the ladder's numbers.

python experiments/eval_motion_run.py --model shapes-tiny-joint --n 64 [--out eval.json]   # the shipped joint model
python experiments/eval_motion_run.py --wan-run-dir checkpoints/wan --conditioning label --n 64   # a Wan run
python experiments/eval_motion_run.py --run-dir checkpoints/motion-full --n 48       # an AnimateDiff run

Wan models (`--model` with a joint video model, or `--wan-run-dir`) are sampled by the same
WanPipeline the workbench uses and read back by the analyzer (`vidlab.training.wan_ladder`):
direction right over 8 directions x 2 speeds (first vs last frame centroid), constancy (frame
steps that move the asked way), speed ratio quickly / slowly, caption sensitivity (opposite
caption vs another seed), subject colour and shape kept per frame. A joint model trained with frame 0
given clean (`vidlab.training.joint`, its folder's vidlab_video.json) is sampled in two passes, and its
rung 0 (single frames on held-out prompts: colour, shape, background) comes first in the output, then
its clip pass alone (`from_frame0`: a true frame 0 at the centre, the asked caption and the opposite one). An AnimateDiff run is exported
into a scratch copy of the zoo and measured as the model card's earlier table was.
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

VIDEO_PARTS = ("video_unet", "wan")


def scratch_zoo(run_dir, into: Path) -> Path:
    """A copy of the packaged zoo whose video model is the AnimateDiff run's."""
    from vidlab.training.motion import export_motion
    zoo = into / "zoo"
    shutil.copytree(ZOO_PATH, zoo, ignore=shutil.ignore_patterns(*VIDEO_PARTS))
    export_motion(run_dir, out_dir=zoo)
    return zoo


def wan_numbers(args) -> dict:
    from vidlab.training.wan_ladder import ladder_numbers
    if args.wan_run_dir:
        from vidlab.training.wan import trained_pipeline
        pipe, encoder = trained_pipeline(args.wan_run_dir, args.conditioning)
        conditioning = args.conditioning
    else:
        backend = load_backend(args.model, device=args.device)
        if backend.video_design != "joint":
            raise SystemExit(f"--model {args.model!r} has no joint (Wan) video model; its video design is "
                             f"{backend.video_design!r}: measure AnimateDiff runs with --run-dir")
        pipe, encoder, conditioning = backend.pipeline("wan"), None, "text"
        if backend.wan_first_frame == "clean":  # the staged model: rung 0 first, the clip pass alone, two passes
            from vidlab.training.wan_ladder import anchored_numbers, image_numbers
            return {"first_frame": "clean",
                    "rung0": image_numbers(pipe, n=args.n_images, steps=args.steps, guidance=args.guidance),
                    "from_frame0": anchored_numbers(pipe, n=args.n, steps=args.steps, guidance=args.guidance),
                    **ladder_numbers(pipe, conditioning, encoder, n=args.n, steps=args.steps, guidance=args.guidance,
                                     first_frame="clean")}
    return ladder_numbers(pipe, conditioning, encoder, n=args.n, steps=args.steps, guidance=args.guidance)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a preset or folder whose joint video model to measure")
    parser.add_argument("--wan-run-dir", default=None, help="a vidlab.training.wan run (checkpoints/wan)")
    parser.add_argument("--conditioning", default="text", choices=["text", "label", "zoo-clip"])
    parser.add_argument("--run-dir", default=None, help="an AnimateDiff (vidlab.training.motion) run")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--n-images", type=int, default=64,
                        help="a joint model trained with frame 0 clean: held-out prompts of its rung 0 (single frames)")
    parser.add_argument("--guidance", type=float, default=None, help="default: 4.0 for Wan, 3.0 for AnimateDiff")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if sum(x is not None for x in (args.model, args.wan_run_dir, args.run_dir)) != 1:
        parser.error("give exactly one of --model, --wan-run-dir, --run-dir")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.run_dir is None:
        args.guidance = 4.0 if args.guidance is None else args.guidance
        result = {"model": args.model, "wan_run_dir": args.wan_run_dir, "conditioning": args.conditioning,
                  **wan_numbers(args)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            backend = load_backend(str(scratch_zoo(args.run_dir, Path(tmp))), device="cpu")
            guidance = 3.0 if args.guidance is None else args.guidance
            result = {"run_dir": args.run_dir,
                      "motion": ev.motion(backend, n=args.n, steps=args.steps, guidance_scale=guidance),
                      "caption_sensitivity": ev.caption_sensitivity(backend)}
    result["eval_seconds"] = round(time.time() - t0, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
