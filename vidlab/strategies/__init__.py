"""Ways of making a video. Each is a plain function with one signature:

    strategy(backend, request, options: dict, callback=None) -> (frames (F, 3, H, W) in [0, 1], record: dict)

`STRATEGIES` maps names to them; `vidlab.generate(..., strategy=NAME)` dispatches.
"""
import torch

from ..config import check_seed_batch
from .frame_chain import FrameChainOptions, frame_chain, frame_chain_batch
from .native import NativeOptions, native, native_batch
from .segment_chain import RetrySegment, SegmentChainOptions, segment_chain, segment_chain_batch
from .sliding_window import SlidingWindowOptions, sliding_window, sliding_window_batch

STRATEGIES = {
    "frame_chain": frame_chain,
    "segment_chain": segment_chain,
    "native": native,
    "sliding_window": sliding_window,
}

# strategies that make several seeds' videos in one batched call, each video bit-identical to its own run:
#   strategy_batch(backend, requests (differing only in seed), options, callback=None) -> [(frames, record), ...]
BATCHED_STRATEGIES = {
    "frame_chain": frame_chain_batch,
    "segment_chain": segment_chain_batch,
    "native": native_batch,
    "sliding_window": sliding_window_batch,
}

# strategies whose batched form also pays on a CPU on an image model (experiments/bench_sweep.py,
# 16 seeds, 2 cores: frame_chain 2.28x, segment_chain 2.08x). A video model's clip is already one
# call over 2 x frames images, near the image UNet's fully batched rate, so more clips in that call
# gained nothing on the CPU (native 0.82x, sliding_window 0.83x; at 2/4/8 clips a call 0.96/0.93/0.91x,
# the batch-invariance patches costing nothing measurable; segment_chain on a video model makes its
# segments the same way), so there they make one seed a call unless a batch is asked for.
CPU_BATCHED_STRATEGIES = {"frame_chain", "segment_chain"}


def batches_on(strategy: str, device, family: str | None = "sd") -> bool:
    """Whether `strategy` batches seeds by default on `device` for a model of `family` (the
    preset's: 'sd' is an image model; None: unknown). See CPU_BATCHED_STRATEGIES. frame_chain
    runs an image model whatever the family; segment_chain runs the family's model, so on a CPU
    it batches only where that is known to be an image model."""
    if strategy not in BATCHED_STRATEGIES:
        return False
    image_model = strategy == "frame_chain" or family == "sd"
    return torch.device(device).type != "cpu" or (strategy in CPU_BATCHED_STRATEGIES and image_model)


# each strategy's options model: its defaults are part of a sweep point's id
STRATEGY_OPTIONS = {
    "frame_chain": FrameChainOptions,
    "segment_chain": SegmentChainOptions,
    "native": NativeOptions,
    "sliding_window": SlidingWindowOptions,
}


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        from ..errors import UserInputError
        raise UserInputError("strategy", strategy, f"is not one of {sorted(STRATEGIES)}")


def check_options(strategy: str, options: dict):
    """The options validated by the strategy's option model: RequestError naming each bad one (name, value,
    what is allowed), before any model loads. Returns the validated model."""
    from ..config import parse_request
    check_strategy(strategy)
    return parse_request(dict(options), STRATEGY_OPTIONS[strategy])


def option_defaults(strategy: str) -> dict:
    """The default of every option of `strategy`, as JSON values."""
    model = STRATEGY_OPTIONS[strategy]
    return {name: field.default for name, field in model.model_fields.items()}
