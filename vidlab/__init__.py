"""vidlab: a Jupyter-first research workbench for diffusion text-to-video.

The generation entry points (`generate`, `generate_batch`, `replay`, `Video`) load torch and diffusers,
so they are imported when first used: `import vidlab` and the command line's `--help` stay quick.
`vidlab.generate` is the function (as `from vidlab import generate` gives), not its module of the same
name; that module is `sys.modules["vidlab.generate"]`.
"""
import importlib
import sys
import types

from . import _quiet
from ._version import __version__

_quiet.install()

from .config import GenerationRequest, Keyframe, RequestError, StructuredPrompt, parse_request, request_schema

_LAZY = {"generate": "generate", "generate_batch": "generate", "replay": "generate", "Video": "video"}

__all__ = ["GenerationRequest", "Keyframe", "StructuredPrompt", "RequestError", "parse_request", "request_schema",
           "generate", "generate_batch", "replay", "Video", "__version__"]


class _Package(types.ModuleType):
    """The package, whose entry points load on first use; importing the submodule `generate` does not
    replace the function of that name (the import system sets a package attribute per submodule)."""

    def __getattr__(self, name: str):
        if name in _LAZY:
            value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
            super().__setattr__(name, value)
            return value
        raise AttributeError(f"module 'vidlab' has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return  # the submodule `vidlab.generate` is in sys.modules; the name stays the function's
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
