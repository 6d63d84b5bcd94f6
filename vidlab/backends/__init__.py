"""Model backends: presets by name, any local folder or hub id, an LRU cache of loaded pipelines."""
from .loading import (Backend, ModelNotAvailableError, cache_info, clear_cache, default_device_dtype, load_backend,
                      set_cache_size, weights_hash)
from .presets import PRESETS, ZOO_PATH, Preset, resolve
