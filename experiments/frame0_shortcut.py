"""Does an anchored joint model take the direction from the caption, or from where frame 0 puts the subject?

In 64 px an 8-frame path that stays in the frame starts on the side opposite its motion, so a clip
pass given frame 0 can read the direction off frame 0's position without the caption. Measured on a
joint model trained with frame 0 clean (`--model`, default the zoo's), on the ladder's 32 test
motions (subject inside the frame throughout, `wan_ladder.test_motions`):

- t2v: two-pass clips from the caption: how often pass 1 puts the subject on the side opposite the
  asked motion (where the motion fits; the test clips' own first frames do in `truth_placed_opposite`),
  how often the clip then moves toward the frame's centre, and direction right (first vs last frame);
- i2v: the test clip's true frame 0 as the anchor, sampled with its caption and with the opposite
  direction's: how often the subject moves the clip's true way under each. The same share under
  both captions means the caption is ignored and frame 0's position decides.

Where the subject is lost: `kept` (share of frames whose analyzed colour and shape are the asked
ones) splits the two passes: frame 0 right (pass 1's drawing), frames 1-7 of the clips whose frame 0
is right (pass 2 keeping a right subject), and frames 1-7 from the true frame 0 (i2v, asked caption; with a 95%
interval over the clips); each also by the asked shape.

    python experiments/frame0_shortcut.py --model shapes-tiny-joint [--out shortcut.json]
"""
import argparse
import json
import time

import numpy as np
import torch

from vidlab.backends import load_backend
from vidlab.metrics.curves import t_interval
from vidlab.strategies.native import encode_anchors, wan_decode, wan_two_pass
from vidlab.training.wan_ladder import caption_with, share_by, subject_kept, test_motions
from vidlab.world.analyzer import analyze, direction_of
from vidlab.world.shapes import IMAGE_SIZE, OPPOSITE, SHAPES

CENTRE = np.array([IMAGE_SIZE / 2, IMAGE_SIZE / 2])


def moves(frames) -> str | None:
    a, b = analyze(frames[0]).centroid, analyze(frames[-1]).centroid
    return None if a is None or b is None else direction_of(np.subtract(b, a))


def kept(frames, clip) -> list[bool]:
    """Per frame: the analyzer reads the clip's colour and shape (`wan_ladder.subject_kept`)."""
    return subject_kept([analyze(f) for f in frames], clip.scene)


def by_shape(values, clips) -> dict:
    """The mean of `values` (one per clip) over the clips of each asked shape."""
    return share_by(values, [c.scene for c in clips], "shape", SHAPES)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    backend = load_backend(args.model)
    if backend.wan_first_frame != "clean":
        raise SystemExit(f"--model {args.model!r}: its joint model is not trained with frame 0 clean "
                         f"(wan_first_frame={backend.wan_first_frame!r}); nothing to measure")
    pipe = backend.pipeline("wan")
    clips = test_motions(args.n)

    def call(prompts):
        return dict(prompt=prompts, height=64, width=64, num_inference_steps=args.steps, guidance_scale=args.guidance,
                    max_sequence_length=pipe.tokenizer.model_max_length,
                    generator=[torch.Generator().manual_seed(4242 + i) for i in range(len(clips))])

    with torch.no_grad():
        t2v = [wan_decode(pipe, one[None]) for one in wan_two_pass(pipe, call([c.caption for c in clips]), 8)]
    placed, truth_placed, toward, right = [], [], [], []
    for c, frames in zip(clips, t2v):
        first = analyze(frames[0]).centroid
        offset = None if first is None else np.subtract(first, CENTRE)
        placed.append(offset is not None and direction_of(-offset) == c.direction)
        truth_placed.append(direction_of(CENTRE - np.array(c.scene.center)) == c.direction)
        toward.append(offset is not None and moves(frames) == direction_of(-offset))
        right.append(moves(frames) == c.direction)
    t2v_kept = [kept(frames, c) for c, frames in zip(clips, t2v)]
    later_when_right = [np.mean(k[1:]) for k in t2v_kept if k[0]]
    out = {"model": args.model, "n": args.n, "steps": args.steps,
           "t2v": {"placed_opposite": float(np.mean(placed)), "truth_placed_opposite": float(np.mean(truth_placed)),
                   "moved_toward_centre": float(np.mean(toward)), "direction_right": float(np.mean(right)),
                   "kept": float(np.mean(t2v_kept)), "frame0_kept": float(np.mean([k[0] for k in t2v_kept])),
                   "later_kept_when_frame0_kept": float(np.mean(later_when_right)) if later_when_right else None,
                   "frame0_kept_by_shape": by_shape([k[0] for k in t2v_kept], clips)}}
    anchors = torch.cat(encode_anchors(pipe, [c.render()[0] for c in clips]))
    for name, prompts in (("asked", [c.caption for c in clips]),
                          ("opposite", [caption_with(c, OPPOSITE[c.direction]) for c in clips])):
        with torch.no_grad():
            latents = wan_two_pass(pipe, call(prompts), 8, anchors=anchors)
        decoded = [wan_decode(pipe, one[None]) for one in latents]
        out[f"i2v_{name}_caption_moves_the_clip_s_way"] = float(np.mean(
            [moves(frames) == c.direction for c, frames in zip(clips, decoded)]))
        if name == "asked":  # frame 0 is the true one's VAE round trip; frames 1-7 are the clip pass's
            i2v_kept = [kept(frames, c) for c, frames in zip(clips, decoded)]
            out["i2v_frame0_kept"] = float(np.mean([k[0] for k in i2v_kept]))
            out["i2v_later_kept"] = float(np.mean([k[1:] for k in i2v_kept]))
            t = t_interval([float(np.mean(k[1:])) for k in i2v_kept])  # over the clips
            out["i2v_later_kept_ci95"] = [t["ci_low"], t["ci_high"]]
            out["i2v_later_kept_by_shape"] = by_shape([np.mean(k[1:]) for k in i2v_kept], clips)
    out["seconds"] = round(time.time() - t0)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
