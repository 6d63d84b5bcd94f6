"""The one place that silences library messages about things vidlab does on purpose.

- transformers: "`CLIPImageProcessor` requires torchvision (not installed); falling back to ...Pil".
  vidlab does not depend on torchvision (PyPI's build does not import beside the CPU torch), and
  the PIL image processors are what it wants.
- diffusers: "`num_frames - 1` has to be divisible by 1" from WanPipeline on a VAE that does not
  compress time: always true, the pipeline then makes num_frames + 1 frames, which vidlab plans for.
- diffusers: "There are modules in X that should be kept in float32: []" when a pipeline-built
  module is cast: with an empty list there is nothing to keep in float32. A non-empty list still shows.
"""
from __future__ import annotations

import logging

_MUTED = {
    "transformers.utils.import_utils": lambda msg: "requires torchvision (not installed)" in msg,
    "diffusers.models.modeling_utils": lambda msg: "should be kept in float32: []." in msg,
    # a Wan VAE without temporal compression (the zoo's): every count is "k*n + 1" for k = 1, and the
    # pipeline's rounding adds the one frame vidlab asked one fewer for (see strategies.native)
    "diffusers.pipelines.wan.pipeline_wan": lambda msg: "has to be divisible by 1." in msg,
}


class _Mute(logging.Filter):
    def __init__(self, muted):
        super().__init__()
        self.muted = muted

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.muted(record.getMessage())


def install() -> None:
    for name, muted in _MUTED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Mute) for f in logger.filters):
            logger.addFilter(_Mute(muted))


def loading_bars(show: bool) -> None:
    """Show or hide the progress bars diffusers and transformers draw while loading a model (the command
    line hides them: its own output is what a user reads, and an error stays one line)."""
    import os

    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0" if show else "1"
    for module in (diffusers_logging, transformers_logging):
        (module.enable_progress_bar if show else module.disable_progress_bar)()
