"""`generate`: a request, a strategy and a model in; a `Video` with a replayable record out."""
from __future__ import annotations

from typing import Literal

import torch

from .backends import Backend, load_backend
from .backends.spec import BackendSpec
from .config import (DEFAULT_BATCH_PIXEL_FRAMES, DEFAULT_BUDGET_PIXEL_FRAMES, GenerationRequest, check_budget,
                     parse_request, seed_batch_splits)
from .strategies import BATCHED_STRATEGIES, STRATEGIES, batches_on, check_options, check_seed_batch
from .strategies.image_fields import color_grade
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
    return generate_batch([request], strategy, model, device, dtype, callback, strict, budget, **options)[0]


def generate_batch(requests: list, strategy: str = "frame_chain", model: str | Backend = "shapes-tiny",
                   device: str | None = None, dtype: str | None = None, callback=None, strict: bool = False,
                   budget: int | None = DEFAULT_BUDGET_PIXEL_FRAMES,
                   batch_budget: int | None | Literal["auto"] = "auto", **options) -> list[Video]:
    """One Video per request, the requests differing only in their seed (arguments as `generate`).

    A strategy of `BATCHED_STRATEGIES` makes them in batched calls, each video bit-identical to
    `generate` on its request alone; any other strategy makes them one after another.
    batch_budget: the most frames x pixels one batched call holds, summed over its seeds; more
    requests are split into several calls, in order (`config.seed_batch_splits`), so a large
    batch never runs out of memory where one request would not (None: one call). 'auto':
    `config.DEFAULT_BATCH_PIXEL_FRAMES` where batching pays (`strategies.batches_on`: on a CPU,
    only frame_chain and segment_chain), else one request a call. Each record is the one
    `generate` writes, except `timing`: its call's seconds shared equally, with that call's
    `batch_size`.

    >>> videos = generate_batch([{"prompt": "a red circle", "seed": s} for s in range(4)])  # doctest: +SKIP
    """
    # 1. check inputs, before any model loads
    requests = [r if isinstance(r, GenerationRequest) else parse_request(r) for r in requests]
    check_options(strategy, options)
    check_seed_batch(requests)
    check_budget(requests[0], budget)
    # a bad budget is refused before any model loads; 'auto' needs the model's device and family
    splits = None if batch_budget == "auto" else seed_batch_splits(requests, batch_budget)
    backend = model if isinstance(model, Backend) else load_backend(model, device=device, dtype=dtype)
    if splits is None:
        pays = batches_on(strategy, backend.device, backend.preset.family)
        splits = seed_batch_splits(requests, DEFAULT_BATCH_PIXEL_FRAMES if pays else 1)
    if strategy not in BATCHED_STRATEGIES:
        splits = [[r] for r in requests]
    request = requests[0]
    unseen = unseen_words(backend, [*request.prompt_schedule(), request.negative_prompt], strict=strict)
    # 2. the strategy, batched when it can be
    outputs, costs = [], []
    for part in splits:
        with measured(backend.device) as cost:
            if len(part) > 1:
                outputs += BATCHED_STRATEGIES[strategy](backend, part, options, callback)
            else:
                outputs.append(STRATEGIES[strategy](backend, part[0], options, callback))
        costs += [dict(cost, seconds=round(cost["seconds"] / len(part), 4), batch_size=len(part))
                  for _ in part]  # one dict a record: a record's timing is its own
    # 3. one colour grade for every frame, after the strategy (so it never compounds along a chain)
    shared = {"backend": backend.record(), "versions": library_versions(), "git_commit": git_commit()}
    videos = []
    for r, (frames, strategy_record), cost in zip(requests, outputs, costs):
        frames = color_grade(frames, r.color_palette)
        if frames.shape[0] != r.num_frames:
            raise RuntimeError(f"strategy {strategy!r} returned {frames.shape[0]} frames, the request asks for "
                               f"{r.num_frames}")
        record = {
            "request": r.model_dump(mode="json"),
            "strategy": strategy,
            "options": options,
            "strategy_record": strategy_record,
            "unseen_words": unseen,
            **shared,
            "timing": cost,
            "num_frames": int(frames.shape[0]),
            "fps": r.fps,
        }
        videos.append(Video(frames.to(torch.float32), r.fps, record))
    return videos


def check_inputs(request: GenerationRequest, strategy: str, backend: BackendSpec, options: dict,
                 budget: int | None = DEFAULT_BUDGET_PIXEL_FRAMES) -> None:
    """What `generate` would refuse, told before any model loads: the strategy and its options, the
    frame budget, the model and its parts (presets, existing folders or hub ids) and the device."""
    check_options(strategy, options)
    check_budget(request, budget)
    backend.check()


def replay(record: dict, callback=None, **changes) -> Video:
    """Run a recorded generation again: the same request, strategy, options and model parts
    (`changes`: device=, dtype= to run it elsewhere; frames match only on the same device and dtype)."""
    backend = BackendSpec.from_record(record["backend"], **changes).load()
    return generate(record["request"], strategy=record["strategy"], model=backend, callback=callback,
                    budget=None, **record["options"])  # its size was allowed when it was made
