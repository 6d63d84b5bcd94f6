"""How well does a Wan VAE keep a subject's shape? The round trip of rendered ground-truth frames.

Each VAE (a diffusers `AutoencoderKLWan` folder, e.g. the zoo's `wan/vae` before and after a decoder
fine-tune) encodes the same n frames (posterior mean) and decodes them; the analyzer reads colour,
shape, background and position, and the shape by subject size and by asked shape
(`wan_ladder.vae_reconstruction`). This caps what any generator on that VAE can show: a frame whose
latent is perfect still reads only as well as its decode.

    python experiments/wan_vae_roundtrip.py --vae before=old/wan/vae after=vidlab/zoo/shapes-tiny/wan/vae \
        [--n 300] [--seed 555] [--out vae.json]
"""
import argparse
import json

import torch

from vidlab.training.wan_ladder import vae_reconstruction


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", nargs="+", required=True, metavar="LABEL=DIR")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=555)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON: {label: numbers}; with one --vae, the numbers alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKLWan
    results = {}
    for item in args.vae:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"--vae {item!r}: expected LABEL=DIR")
        vae = AutoencoderKLWan.from_pretrained(folder).eval()
        results[label] = vae_reconstruction(vae, n=args.n, seed=args.seed)
        print(label, json.dumps(results[label]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(next(iter(results.values())) if len(results) == 1 else results, f, indent=1)


if __name__ == "__main__":
    main()
