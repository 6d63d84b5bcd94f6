"""One generation with attention capture: the frames and the capture, for notebooks and experiments."""
from __future__ import annotations

import dataclasses

import torch

from ..strategies.native import video_frames
from .capture import KINDS, AttentionCapture


@dataclasses.dataclass
class AttentionRun:
    """Frames (F, 3, H, W) in [0, 1] of one generation and the attention it captured."""

    frames: torch.Tensor
    capture: AttentionCapture
    prompt: str
    seed: int
    pipeline_kind: str
    num_inference_steps: int
    guidance_scale: float


def _frames(output) -> torch.Tensor:
    """A pipeline's `output_type='pt'` images or video -> (F, 3, H, W) on the CPU."""
    return video_frames(output.frames if hasattr(output, "frames") else output.images)


def generate_with_attention(backend, prompt: str, seed: int = 0, num_inference_steps: int = 20,
                            guidance_scale: float = 3.0, num_frames: int = 1, height: int | None = None,
                            width: int | None = None, layers: str | None = None, kinds: tuple[str, ...] = KINDS,
                            steps: tuple[int, int] | None = None) -> AttentionRun:
    """Generate an image (num_frames=1) or a video with the backend's pipeline, capturing attention.

    Video uses the backend's video pipeline ("animatediff" or "wan"); the other arguments are
    those of `AttentionCapture`.
    >>> run = generate_with_attention(load_backend("shapes-tiny"), "a red circle", num_inference_steps=4)  # doctest: +SKIP
    >>> run.capture.word_maps()["circle"].shape                                                        # doctest: +SKIP
    torch.Size([1, 16, 16])
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r} must be an integer >= 1")
    from ..strategies.native import text_length, wan_frames_to_ask
    if num_frames == 1 and "text2img" in backend.kinds:
        kind, extra = "text2img", {}
    elif backend.video_design is not None:  # the backend's own video model: joint (Wan) or factorized
        kind, extra = ("wan" if backend.video_design == "joint" else "animatediff"), {"num_frames": num_frames}
    else:
        raise ValueError(f"num_frames={num_frames} needs a video pipeline; model {backend.preset.name!r} "
                         f"offers {backend.kinds}")
    pipe = backend.pipeline(kind)
    if kind == "wan":  # as `native` calls it: exactly num_frames frames, the tokenizer's own text length
        extra = {"num_frames": wan_frames_to_ask(pipe, num_frames), "max_sequence_length": text_length(pipe)}
    size = {k: v for k, v in (("height", height), ("width", width)) if v is not None}
    with AttentionCapture(pipe, prompt, layers=layers, kinds=kinds, steps=steps) as capture:
        output = pipe(prompt, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                      generator=torch.Generator("cpu").manual_seed(int(seed)), output_type="pt", **size, **extra)
    return AttentionRun(_frames(output)[:num_frames], capture, prompt, seed, kind, num_inference_steps, guidance_scale)
