"""`generate`: a request, a strategy and a model in; a `Video` with a replayable record out."""
from __future__ import annotations

import torch

from .backends import Backend, load_backend
from .config import DEFAULT_BUDGET_PIXEL_FRAMES, GenerationRequest, check_budget, parse_request
from .strategies import STRATEGIES
from .strategies.effects import color_grade
from .strategies.video_fields import unseen_words
from .video import Video, git_commit, library_versions, measured


def generate(request: GenerationRequest | dict | str, strategy: str = "frame_chain",
             model: str | Backend = "shapes-tiny",
             device: str | None = None, dtype: str | None = None, callback=None, strict: bool = False,
             budget: int | None = DEFAULT_BUDGET_PIXEL_FRAMES, **options) -> Video:
    """Make a video.

    request: a GenerationRequest, or a dict / JSON text validated into one.
    strategy: a key of `vidlab.strategies.STRATEGIES`; options: that strategy's options.
    model: a preset name, a local diffusers folder, a hub id (see `vidlab.backends`) or a loaded Backend.
    strict: words of a prompt the model cannot see (unknown to its tokenizer, or past its token
    limit) are an error; otherwise a warning, and the record's `unseen_words` lists them.
    budget: the most frames x pixels the request may ask for (checked before any model loads; None: no limit).

    >>> video = generate({"prompt": "a red circle in the center on a white background"})  # doctest: +SKIP
    >>> video.frames.shape                                                                 # doctest: +SKIP
    torch.Size([16, 3, 64, 64])
    """
    if not isinstance(request, GenerationRequest):
        request = parse_request(request)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {sorted(STRATEGIES)}")
    check_budget(request, budget)
    backend = model if isinstance(model, Backend) else load_backend(model, device=device, dtype=dtype)
    unseen = unseen_words(backend, [*request.prompt_schedule(), request.negative_prompt], strict=strict)
    with measured(backend.device) as cost:
        frames, strategy_record = STRATEGIES[strategy](backend, request, options, callback)
        # one colour grade for every frame, after the strategy (so it never compounds along a chain)
        frames = color_grade(frames, request.color_palette)
    if frames.shape[0] != request.num_frames:
        raise RuntimeError(f"strategy {strategy!r} returned {frames.shape[0]} frames, the request asks for "
                           f"{request.num_frames}")
    record = {
        "request": request.model_dump(mode="json"),
        "strategy": strategy,
        "options": options,
        "strategy_record": strategy_record,
        "unseen_words": unseen,
        "backend": backend.record(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "timing": cost,
        "num_frames": int(frames.shape[0]),
        "fps": request.fps,
    }
    return Video(frames.to(torch.float32), request.fps, record)


def replay(record: dict, callback=None) -> Video:
    """Run a recorded generation again (same request, strategy, options, model)."""
    b = record["backend"]
    backend = load_backend(b["model"], device=b["device"], family=b["family"], base=b["base"],
                           controlnet=b["controlnet"], motion_adapter=b["motion_adapter"],
                           motion_lora=b.get("motion_lora"), video_unet=b.get("video_unet"))
    return generate(record["request"], strategy=record["strategy"], model=backend, callback=callback,
                    **record["options"])
