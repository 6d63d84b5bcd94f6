"""Ways of making a video. Each is a plain function with one signature:

    strategy(backend, request, options: dict, callback=None) -> (frames (F, 3, H, W) in [0, 1], record: dict)

`STRATEGIES` maps names to them; `vidlab.generate(..., strategy=NAME)` dispatches.
"""
from ..config import check_seed_batch
from .frame_chain import FrameChainOptions, frame_chain, frame_chain_batch
from .native import NativeOptions, SlidingWindowOptions, native, native_batch, sliding_window, sliding_window_batch
from .segment_chain import RetrySegment, SegmentChainOptions, segment_chain, segment_chain_batch

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

# each strategy's options model: its defaults are part of a sweep point's id
STRATEGY_OPTIONS = {
    "frame_chain": FrameChainOptions,
    "segment_chain": SegmentChainOptions,
    "native": NativeOptions,
    "sliding_window": SlidingWindowOptions,
}


def option_defaults(strategy: str) -> dict:
    """The default of every option of `strategy`, as JSON values."""
    model = STRATEGY_OPTIONS[strategy]
    return {name: field.default for name, field in model.model_fields.items()}
