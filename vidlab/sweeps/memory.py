"""Peak memory of one block of work (one sweep point), measured as honestly as the platform allows.

What is measured, in order of preference:

- **CUDA** (when torch has initialized CUDA by the end of the block): the sum over devices of
  `torch.cuda.max_memory_allocated`, with the peak counters reset at the start of the block.
  Tensors held by the caching allocator; not the CUDA context nor cached-but-free blocks.
- **Resident set (Linux)**: the kernel's peak RSS of this process (`VmHWM` in
  `/proc/self/status`), *reset at the start of the block* by writing `5` to
  `/proc/self/clear_refs`. So it is the process's peak resident memory during this point
  (model weights already loaded count in it; `rss_start_bytes` gives the level before the
  point, so the point's own growth is `rss_peak_bytes - rss_start_bytes`). Unlike
  tracemalloc, it sees torch's CPU tensors, which are not Python allocations.
- **Fallback** (no clear_refs, e.g. macOS): `ru_maxrss`, which is the high-water mark of the
  whole process lifetime, *not* per point; `rss_kind` says so.
- **Python heap** (opt-in, `trace_python=True`): `tracemalloc` peak of Python allocations
  during the block. It misses tensor storage and slows Python-heavy code, so it is off by
  default (it would distort the wall times the slowdown alert reads).

>>> with PeakMemory() as mem:
...     buffer = bytearray(50_000_000)
>>> mem.result["rss_peak_bytes"] >= 50_000_000 or mem.result["rss_kind"].startswith("ru_maxrss")
True
"""
from __future__ import annotations

import re
import resource
import sys
import tracemalloc
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where impossible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _ru_maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # bytes on macOS, kB on Linux


def _cuda_initialized():
    torch = sys.modules.get("torch")  # never import torch just to measure
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch
    return None


class PeakMemory:
    """Context manager; after the block, `.result` holds the measurements described above.

    result keys: peak_memory_bytes (CUDA peak when CUDA was used, else the RSS peak),
    peak_memory_kind, rss_peak_bytes, rss_start_bytes, rss_kind, cuda_peak_bytes (or None),
    python_peak_bytes (or None).
    """

    def __init__(self, trace_python: bool = False):
        self.trace_python = trace_python
        self.result: dict = {}

    def __enter__(self) -> "PeakMemory":
        self._rss_reset = _reset_rss_peak()
        self._rss_start = _status_kb("VmRSS") if self._rss_reset else _ru_maxrss_bytes()
        torch = _cuda_initialized()
        if torch is not None:
            for d in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(d)
        self._tracing = self.trace_python and not tracemalloc.is_tracing()
        if self._tracing:
            tracemalloc.start()
        return self

    def __exit__(self, *exc) -> None:
        python_peak = None
        if self._tracing:
            python_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if self._rss_reset:
            rss_peak, rss_kind = _status_kb("VmHWM"), "VmHWM: process peak RSS during the point (reset via clear_refs)"
        else:
            rss_peak, rss_kind = _ru_maxrss_bytes(), "ru_maxrss: process lifetime peak RSS, not per point"
        cuda_peak = None
        torch = _cuda_initialized()
        if torch is not None:
            cuda_peak = sum(int(torch.cuda.max_memory_allocated(d)) for d in range(torch.cuda.device_count()))
        self.result = {
            "peak_memory_bytes": cuda_peak if cuda_peak is not None else rss_peak,
            "peak_memory_kind": "cuda max_memory_allocated (all devices)" if cuda_peak is not None else rss_kind,
            "rss_peak_bytes": rss_peak,
            "rss_start_bytes": self._rss_start,
            "rss_kind": rss_kind,
            "cuda_peak_bytes": cuda_peak,
            "python_peak_bytes": python_peak,
        }
