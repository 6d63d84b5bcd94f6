"""vidlab: a Jupyter-first research workbench for diffusion text-to-video."""
__version__ = "0.1.0"

from . import _quiet

_quiet.install()

from .config import GenerationRequest, Keyframe, RequestError, StructuredPrompt, parse_request, request_schema
from .generate import generate, generate_batch, replay
from .video import Video

__all__ = ["GenerationRequest", "Keyframe", "StructuredPrompt", "RequestError", "parse_request", "request_schema",
           "generate", "generate_batch", "replay", "Video"]
