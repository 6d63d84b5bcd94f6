"""vidlab: a Jupyter-first research workbench for diffusion text-to-video."""
from . import _quiet
from ._version import __version__

_quiet.install()

from .config import GenerationRequest, Keyframe, RequestError, StructuredPrompt, parse_request, request_schema
from .generate import generate, generate_batch, replay
from .video import Video

__all__ = ["GenerationRequest", "Keyframe", "StructuredPrompt", "RequestError", "parse_request", "request_schema",
           "generate", "generate_batch", "replay", "Video"]
