"""Measure the shipped shapes-tiny zoo with the analyzer; prints JSON and writes it for the model card.

python experiments/eval_zoo.py --out vidlab/zoo/shapes-tiny/eval.json [--guidance 3 5 7.5]
The guidance scale of the headline numbers is the one chosen by measurement on a separate
prompt set (seed 4321) among --guidance values.
`--parts img2img motion` re-measures only those parts and keeps the rest of --out as it was
(the guidance scale then comes from --out's chosen_guidance_scale).
"""
import argparse
import json
import time
from pathlib import Path

import torch

from vidlab.backends import load_backend
from vidlab.training import evaluation as ev


PARTS = ("text_to_image", "controlnet", "vae", "img2img", "inference_cost", "motion")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="shapes-tiny")
    parser.add_argument("--out", default=None)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 5.0, 7.5])
    parser.add_argument("--select-n", type=int, default=60)
    parser.add_argument("--motion-n", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = load_backend(args.model, device="cpu")
    t0 = time.time()
    result = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    if "text_to_image" in args.parts:
        selection = {g: ev.text_to_image(backend, n=args.select_n, seed=4321, guidance_scale=g) for g in args.guidance}
        score = {g: sum(r[k] for k in ev.ATTRS) for g, r in selection.items()}
        best = max(score, key=score.get)
        result.update({"guidance_selection": {str(g): r for g, r in selection.items()}, "chosen_guidance_scale": best,
                       "text_to_image": ev.text_to_image(backend, n=args.n, guidance_scale=best)})
    best = result.get("chosen_guidance_scale", 3.0)
    if "controlnet" in args.parts and "controlnet" in backend.components:
        result["controlnet"] = ev.controlnet(backend, n=100, guidance_scale=best)
    if "vae" in args.parts:
        result["vae_reconstruction"] = ev.vae_reconstruction(backend)
    if "img2img" in args.parts:
        result["img2img"] = ev.img2img(backend, n=100, strength=0.3, guidance_scale=best)
        result["img2img_check"] = ev.img2img(backend, n=300, seed=77, strength=0.3, guidance_scale=best)
    if "inference_cost" in args.parts:
        result["inference_cost"] = ev.inference_cost(backend, guidance_scale=best)
    if "motion" in args.parts and backend.has_video_model:
        result["motion"] = ev.motion(backend, n=args.motion_n, guidance_scale=best)
        result["motion_caption_sensitivity"] = ev.caption_sensitivity(backend)
        result["sliding_window"] = ev.sliding_window_seams(backend, n=6)
    result["eval_seconds"] = round(time.time() - t0, 1)
    emit(result, args.out)


def emit(result: dict, out: str | None) -> None:
    """Print the measurement as JSON, and write it to `out` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)


if __name__ == "__main__":
    main()
