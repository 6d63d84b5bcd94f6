"""Model backends: presets by name, any local folder or hub id, an LRU cache of loaded pipelines.

The preset names are torch-free and imported at once; the loading side (torch, diffusers) is
imported on first use of one of its names, so `vidlab --help` and a config check stay quick.
"""
from .presets import DTYPES, FAMILIES, PART_HELP, PARTS, PRESETS, ZOO_PATH, Preset, resolve

_LOADING = ("Backend", "ModelNotAvailableError", "cache_info", "clear_cache", "default_device_dtype", "load_backend",
            "set_cache_size", "weights_hash")

__all__ = ["DTYPES", "FAMILIES", "PART_HELP", "PARTS", "PRESETS", "ZOO_PATH", "Preset", "resolve", *_LOADING]


def __getattr__(name: str):
    if name in _LOADING:
        from . import loading
        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
