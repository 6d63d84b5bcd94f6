"""Correctness of attention capture on the shapes world: does a word's heat land on its subject?

For n prompts (captions of random scenes, each with its own seed) generated on the offline zoo
(guidance 3.0, 20 steps), the ratio (share of the word's heat inside the subject's bounding box,
dilated by 4 px) / (share of the image the box covers), for the shape word, the colour word and
the control word "background" (expected below 1). Printed as JSON; `--out` also writes it.
See `vidlab/attention/localization.py` for the two heat versions ("shown", "raw").

    nice -n 10 python experiments/eval_attention.py --n 60
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vidlab.attention.localization import localization_records, summarize
from vidlab.backends import load_backend


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="prompts (each with its own seed), >= 50 for the report")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dilate", type=int, default=4, help="pixels added to each side of the analyzer's box")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    records = localization_records(load_backend("shapes-tiny"), n=args.n, seed=args.seed, dilate=args.dilate)
    summary = {"model": "shapes-tiny", "guidance_scale": 3.0, "steps": 20, "dilate_px": args.dilate,
               "seed": args.seed, **summarize(records), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "records": records}, indent=2))
    return summary


if __name__ == "__main__":
    main()
