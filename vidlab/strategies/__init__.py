"""Ways of making a video. Each is a plain function with one signature:

    strategy(backend, request, options: dict, callback=None) -> (frames (F, 3, H, W) in [0, 1], record: dict)

`STRATEGIES` maps names to them; `vidlab.generate(..., strategy=NAME)` dispatches.
"""
from .frame_chain import frame_chain
from .native import native, sliding_window
from .segment_chain import RetrySegment, segment_chain

STRATEGIES = {
    "frame_chain": frame_chain,
    "segment_chain": segment_chain,
    "native": native,
    "sliding_window": sliding_window,
}
