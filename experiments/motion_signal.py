"""Where does the motion word's signal die in the zoo's AnimateDiff video model? A measurement, not a guess.

python experiments/motion_signal.py [--n 16] [--out signal.json]

python experiments/motion_signal.py --model shapes-tiny-joint    # the joint (Wan-style) model, for comparison

A joint model trained with frame 0 given clean (its vidlab_video.json) is measured as it is used: frame 0
clean in the noisy input, the prediction compared on frames 1.. only.

For n ground-truth clips never used in training, three captions: the true one, the same with the
opposite direction ('moves left' -> 'moves right'), and the same with another subject colour.
At each stage of the text-to-motion path it measures how far the swap moves the signal, relative
to the true caption's: the text encoder's output (the cross-attention input) over the whole
sequence, and the video model's prediction on the noised clip (AnimateDiff's UNet, or the Wan
transformer). A model that reads the
direction moves its prediction for the direction swap about as much as for the colour swap.
"""
import argparse
import json

import numpy as np
import torch

from vidlab.backends import load_backend
from vidlab.training.common import add_noise
from vidlab.training.evaluation import motion_clips
from vidlab.world.shapes import COLORS, OPPOSITE


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over clips of |a - b| / |a| (each clip's tensor flattened)."""
    a, b = a.flatten(1), b.flatten(1)
    return float(((a - b).norm(dim=1) / a.norm(dim=1)).mean())


def factorized_signal(backend, clips, captions, timesteps) -> dict:
    """AnimateDiff: CLIP states, then the video UNet's epsilon prediction at DDPM timesteps."""
    pipe, n = backend.pipeline("animatediff"), len(clips)
    states = {k: pipe.encode_prompt(v, backend.device, 1, False, None)[0] for k, v in captions.items()}
    pixels = torch.cat([c.render() for c in clips]) * 2 - 1
    latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = latents.view(n, 8, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(7))

    def predict(t, s):
        noisy = add_noise(latents, noise, pipe.scheduler.alphas_cumprod[t])
        return pipe.unet(noisy, torch.full((n,), t), s.repeat_interleave(8, dim=0)).sample
    return swaps(states, predict, timesteps)


def joint_signal(backend, clips, captions, timesteps) -> dict:
    """Wan: UMT5 states, then the transformer's flow prediction at noise level t / 1000."""
    from vidlab.strategies.native import text_length, wan_latent_stats
    pipe, n = backend.pipeline("wan"), len(clips)
    states = {k: pipe.encode_prompt(v, do_classifier_free_guidance=False, max_sequence_length=text_length(pipe),
                                    device=backend.device)[0] for k, v in captions.items()}
    pixels = torch.cat([c.render() for c in clips]) * 2 - 1
    z = pipe.vae.encode(pixels[:, :, None]).latent_dist.mean[:, :, 0]
    z = z.view(n, 8, *z.shape[1:]).permute(0, 2, 1, 3, 4)
    mean, std = wan_latent_stats(pipe.vae)
    latents = (z - mean) / std
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(7))

    clean_first = backend.wan_first_frame == "clean"  # the staged model: frame 0 given clean, read frames 1..

    def predict(t, s):
        sigma = t / 1000
        noisy = (1 - sigma) * latents + sigma * noise
        if clean_first:
            noisy[:, :, 0] = latents[:, :, 0]
        out = pipe.transformer(noisy, torch.full((n,), float(t)), s).sample
        return out[:, :, 1:] if clean_first else out
    return swaps(states, predict, timesteps)


def swaps(states: dict, predict, timesteps) -> dict:
    out = {"text_encoder_output": {k: relative(states["true"], states[k]) for k in SWAPS}, "prediction": {}}
    for t in timesteps:
        preds = {k: predict(t, s) for k, s in states.items()}
        out["prediction"][str(t)] = {k: relative(preds["true"], preds[k]) for k in SWAPS}
    return out


SWAPS = ("direction_swapped", "colour_swapped")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="shapes-tiny")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[500, 900])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    backend = load_backend(args.model, device="cpu")
    clips, _ = motion_clips(args.n, 2026, 8)
    colours = list(COLORS)
    captions = {"true": [c.caption for c in clips],
                "direction_swapped": [c.caption.replace(f" moves {c.direction} ", f" moves {OPPOSITE[c.direction]} ")
                                      for c in clips],
                "colour_swapped": [c.caption.replace(c.scene.color, colours[(colours.index(c.scene.color) + 1) % 8], 1)
                                   for c in clips]}
    measure = joint_signal if backend.video_design == "joint" else factorized_signal
    with torch.no_grad():
        out = {"n": args.n, "model": args.model, "video_design": backend.video_design,
               **measure(backend, clips, captions, args.timesteps)}
    out["direction_over_colour"] = {
        "text_encoder_output": out["text_encoder_output"]["direction_swapped"]
        / out["text_encoder_output"]["colour_swapped"],
        **{f"prediction_t{t}": v["direction_swapped"] / v["colour_swapped"] for t, v in out["prediction"].items()}}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
