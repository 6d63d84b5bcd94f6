"""Loading pipelines: the only place in vidlab that calls `from_pretrained`.

>>> backend = load_backend("shapes-tiny")            # doctest: +SKIP
>>> backend.pipeline("controlnet")                   # doctest: +SKIP
StableDiffusionControlNetPipeline { ... }
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import threading
from pathlib import Path

import torch

from ..errors import UserError
from .checks import check_device, find_broken_file
from .presets import PARTS, Preset, resolve

DEFAULT_CACHE_SIZE = 2


class ModelNotAvailableError(UserError, OSError):
    """A model part is neither a local folder nor in the local hub cache, and the hub is unreachable."""


def default_device_dtype(device: str | None = None, dtype: str | torch.dtype | None = None):
    """CUDA -> bf16 (fp16 where bf16 is unsupported), MPS -> fp16, CPU -> fp32; both overridable."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    device = check_device(device)
    if dtype is None:
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "mps":
            dtype = torch.float16
        else:
            dtype = torch.float32
    elif isinstance(dtype, str):
        allowed = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                   "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if dtype not in allowed:
            raise ValueError(f"dtype={dtype!r} is not one of {sorted(allowed)}")
        dtype = allowed[dtype]
    return device, dtype


def _from_pretrained(cls, where: str, part: str, preset: Preset, **kwargs):
    """cls.from_pretrained(where) with safetensors only, and an honest error when offline."""
    try:
        return cls.from_pretrained(where, use_safetensors=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - a local folder's broken file is named; anything else re-raised
        if Path(where).exists():
            broken = find_broken_file(Path(where) / kwargs.get("subfolder", ""))
            if broken is not None:
                raise broken from err
            raise
        if not isinstance(err, (OSError, ValueError)):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        raise ModelNotAvailableError(
            f"{part} of model {preset.name!r}: {where!r} is not in the local Hugging Face cache and the hub "
            f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'cannot be reached from this machine'}. "
            f"Download it where there is network (e.g. `hf download {where}`), copy the folder here and pass "
            f"its path: load_backend({preset.name!r}, {part}='/path/to/folder'); "
            f"or use the offline zoo: model='shapes-tiny'. (cause: {type(err).__name__}: {str(err)[:200]})"
        ) from err


def weights_hash(*folders: str | None) -> str:
    """sha256 over the safetensors files of local folders; hub cache blobs are named by their sha256."""
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        root = Path(folder)
        if not root.exists():
            h.update(folder.encode())  # a hub id that is not cached: its name is all we know
            continue
        for f in sorted(root.rglob("*.safetensors")):
            h.update(str(f.relative_to(root)).encode())
            target = f.resolve()
            if f.is_symlink() and len(target.name) == 64:  # hub cache: blob name is the content sha256
                h.update(target.name.encode())
            else:
                h.update(_file_sha256(str(target), target.stat().st_size, target.stat().st_mtime_ns).encode())
    return h.hexdigest()[:16]


_FILE_HASHES: dict[tuple, str] = {}


def _file_sha256(path: str, size: int, mtime: int) -> str:
    key = (path, size, mtime)
    if key not in _FILE_HASHES:
        d = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                d.update(chunk)
        _FILE_HASHES[key] = d.hexdigest()
    return _FILE_HASHES[key]


@dataclasses.dataclass
class Backend:
    """Loaded components of one model plus the pipelines built from them (sharing weights)."""

    preset: Preset
    device: torch.device
    dtype: torch.dtype
    components: dict
    weights_hash: str
    _pipes: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def kinds(self) -> list[str]:
        """Pipeline kinds this backend can build."""
        if self.preset.family == "wan":
            return ["wan", "wan_i2v"]
        kinds = ["text2img", "img2img"] + (["wan"] if WAN in self.components else [])
        if "controlnet" in self.components:
            kinds += ["controlnet", "controlnet_img2img"]
        if self.has_video_model:
            kinds += ["animatediff", "animatediff_v2v"]
            if "controlnet" in self.components:
                kinds += ["animatediff_controlnet"]
        return kinds

    @property
    def has_video_model(self) -> bool:
        """Whether this backend makes video natively (Wan, or AnimateDiff's motion model)."""
        return self.video_design is not None

    @property
    def video_design(self) -> str | None:
        """'joint' (Wan: one attention over every (t, h, w) patch), 'factorized' (AnimateDiff: spatial
        layers, then temporal ones) or None (no video model)."""
        if self.preset.family == "wan" or WAN in self.components:
            return "joint"
        if "motion_adapter" in self.components or VIDEO_UNET in self.components:
            return "factorized"
        return None

    @property
    def wan_first_frame(self) -> str | None:
        """'clean' for a joint model trained with frame 0's latent given clean (text-to-video in two
        passes, `native.wan_two_pass`), as its folder's `vidlab_video.json` says; None otherwise."""
        return self.components.get(WAN_RECIPE, {}).get("first_frame")

    def pipeline(self, kind: str):
        """A diffusers pipeline of `kind` over the shared components (built once, then reused)."""
        if kind not in self.kinds:
            raise ValueError(f"pipeline kind={kind!r} is not available for model {self.preset.name!r}; "
                             f"allowed: {self.kinds}")
        if kind not in self._pipes:
            # video-to-video and ControlNet video share the 'animatediff' pipeline's video UNet
            video = self.pipeline("animatediff") if kind in VIDEO_VARIANTS else None
            pipe = _build_pipeline(kind, self.components, video)
            _place(pipe, self.device, self.dtype)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[kind] = pipe
        return self._pipes[kind]

    def record(self) -> dict:
        """What the manifest says about the model: its name, family and every part (`PARTS`), the video
        design, the weights hash, device and dtype (`BackendSpec.from_record` reads it back)."""
        return {"model": self.preset.name, "family": self.preset.family,
                **{p: getattr(self.preset, p) for p in PARTS}, "video_design": self.video_design,
                "weights_hash": self.weights_hash, "device": str(self.device), "dtype": str(self.dtype)}


def _place(pipe, device: torch.device, dtype: torch.dtype) -> None:
    """Move every module of pipe that is not on device with dtype (floating tensors) there.

    A pipeline may build modules of its own: AnimateDiff's UNetMotionModel is made on the CPU, in
    fp32, from the image UNet. The modules loaded by the backend are already in place and stay untouched.
    """
    for module in pipe.components.values():
        if not isinstance(module, torch.nn.Module):
            continue
        tensors = [*module.parameters(), *module.buffers()]
        if any(t.device != device or (t.is_floating_point() and t.dtype != dtype) for t in tensors):
            module.to(device=device, dtype=dtype)


WAN_OPTIONS = "wan_pipeline_options"  # components key of Wan's model_index options (not a module)
WAN = "wan"  # components key of an 'sd' preset's Wan video model: a dict of the WanPipeline's components
WAN_RECIPE = "wan_recipe"  # components key of the joint model's vidlab_video.json (how it was trained), if any
VIDEO_UNET = "video_unet"  # components key of a whole UNetMotionModel (the zoo's fine-tuned video UNet)


def _config_adapter(unet_motion):
    """A tiny MotionAdapter that only carries the video UNet's `motion_max_seq_length`.

    AnimateDiff's pipelines read their context length from `pipe.motion_adapter.config` (FreeNoise);
    a whole UNetMotionModel has no adapter of its own. This one's few weights are never used.
    """
    from diffusers import MotionAdapter

    return MotionAdapter(block_out_channels=(8,), motion_layers_per_block=1, motion_norm_num_groups=8,
                         motion_num_attention_heads=1, use_motion_mid_block=False,
                         motion_max_seq_length=unet_motion.config.motion_max_seq_length)


VIDEO_VARIANTS = ("animatediff_v2v", "animatediff_controlnet")


def _build_pipeline(kind: str, c: dict, video=None):
    """A pipeline of `kind` over the components c; `video`: the 'animatediff' pipeline the variants share."""
    import diffusers as d

    sd = {k: c.get(k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    extras = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "text2img":
        return d.StableDiffusionPipeline(**sd, **extras)
    if kind == "img2img":
        return d.StableDiffusionImg2ImgPipeline(**sd, **extras)
    if kind == "controlnet":
        return d.StableDiffusionControlNetPipeline(**sd, controlnet=c["controlnet"], **extras)
    if kind == "controlnet_img2img":
        return d.StableDiffusionControlNetImg2ImgPipeline(**sd, controlnet=c["controlnet"], **extras)
    if kind == "animatediff":
        if VIDEO_UNET in c:  # a whole video UNet: used as it is
            return d.AnimateDiffPipeline(**{**sd, "unet": c[VIDEO_UNET]}, motion_adapter=_config_adapter(c[VIDEO_UNET]),
                                         feature_extractor=None)
        # the pipeline builds its own UNetMotionModel (a copy of the image UNet's weights)
        return d.AnimateDiffPipeline(**sd, motion_adapter=c["motion_adapter"], feature_extractor=None)
    if kind in VIDEO_VARIANTS:
        parts = dict(video.components)
        if kind == "animatediff_v2v":
            return d.AnimateDiffVideoToVideoPipeline(**parts)
        return d.AnimateDiffControlNetPipeline(**parts, controlnet=c["controlnet"])
    # Wan2.2's pipeline options (expand_timesteps for TI2V-5B, boundary_ratio for the two-expert A14B)
    # live in model_index.json, not in a component: carry them to both pipelines
    wan_options = c.get(WAN_OPTIONS, {})
    c = c.get(WAN, c)
    if kind == "wan":
        return d.WanPipeline(**{k: c[k] for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")},
                             **{k: c.get(k) for k in ("transformer_2",) if k in c}, **wan_options)
    if kind == "wan_i2v":
        return d.WanImageToVideoPipeline(
            **{k: c[k] for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")},
            **{k: c.get(k) for k in ("transformer_2",) if k in c},
            image_encoder=c.get("image_encoder"), image_processor=c.get("image_processor"), **wan_options)
    raise ValueError(f"unknown pipeline kind {kind!r}")


def _load_components(preset: Preset, device, dtype) -> dict:
    import diffusers as d

    kw = dict(dtype=dtype)
    vae = {}
    if preset.vae:  # a pipeline folder's vae/ or a VAE folder / hub id of its own
        cls = d.AutoencoderKLWan if preset.family == "wan" else d.AutoencoderKL
        sub = dict(subfolder="vae") if (Path(preset.vae) / "vae" / "config.json").is_file() else {}
        vae = {"vae": _from_pretrained(cls, preset.vae, "vae", preset, **sub, **kw)}
    if preset.family == "wan":
        pipe = _from_pretrained(d.WanPipeline, preset.base, "base", preset, **vae, **kw)
    else:
        pipe = _from_pretrained(d.StableDiffusionPipeline, preset.base, "base", preset,
                                safety_checker=None, requires_safety_checker=False, **vae, **kw)
    components = {k: v for k, v in pipe.components.items() if v is not None}
    if preset.family == "wan":
        components[WAN_OPTIONS] = {k: pipe.config[k] for k in ("boundary_ratio", "expand_timesteps") if k in pipe.config}
    if preset.controlnet:
        components["controlnet"] = _from_pretrained(d.ControlNetModel, preset.controlnet, "controlnet", preset, **kw)
    if preset.motion_adapter:
        components["motion_adapter"] = _from_pretrained(d.MotionAdapter, preset.motion_adapter,
                                                        "motion_adapter", preset, **kw)
    if preset.video_unet:
        components[VIDEO_UNET] = _from_pretrained(d.UNetMotionModel, preset.video_unet, "video_unet", preset, **kw)
    if preset.wan and preset.family != "wan":
        wan = _from_pretrained(d.WanPipeline, preset.wan, "wan", preset, **kw)
        components[WAN] = {k: v for k, v in wan.components.items() if v is not None}
        components[WAN_RECIPE] = wan_recipe(preset.wan)
    for v in [*components.values(), *components.get(WAN, {}).values()]:
        if isinstance(v, torch.nn.Module):
            v.to(device).eval().requires_grad_(False)
    return components


def wan_recipe(folder: str) -> dict:
    """A local joint-model folder's `vidlab_video.json` ({} for a hub id or a folder without one)."""
    import json
    path = Path(folder) / "vidlab_video.json"
    if not path.is_file():
        return {}
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if recipe.get("first_frame") not in (None, "clean"):
        raise ValueError(f"{path}: first_frame={recipe.get('first_frame')!r} is not one of [None, 'clean']")
    return recipe


class _LRU:
    def __init__(self, size: int):
        self.size, self.items, self.lock = size, collections.OrderedDict(), threading.Lock()
        self.hits = self.misses = 0


_CACHE = _LRU(DEFAULT_CACHE_SIZE)


def load_backend(model: str | Preset = "shapes-tiny", device: str | None = None,
                 dtype: str | torch.dtype | None = None, family: str | None = None, **overrides) -> Backend:
    """Load (or take from the LRU cache) the components of a model preset, folder or hub id.

    overrides: parts (`presets.PARTS`: base=, vae=, controlnet=, ...) replacing the preset's, as local folders
    or hub ids. `BackendSpec` is the typed, checked way to name all of this.
    """
    preset = resolve(model, family=family, **overrides)
    device, dtype = default_device_dtype(device, dtype)
    key = (preset, str(device), str(dtype))
    with _CACHE.lock:
        if key in _CACHE.items:
            _CACHE.hits += 1
            _CACHE.items.move_to_end(key)
            return _CACHE.items[key]
        _CACHE.misses += 1
    components = _load_components(preset, device, dtype)
    local = [getattr(preset, p) for p in PARTS if getattr(preset, p)]
    backend = Backend(preset, device, dtype, components, weights_hash(*[_local_folder(p) for p in local]))
    with _CACHE.lock:
        _CACHE.items[key] = backend
        while len(_CACHE.items) > _CACHE.size:
            _CACHE.items.popitem(last=False)
    return backend


def _local_folder(where: str) -> str:
    """The folder a part was loaded from: itself, or its snapshot in the hub cache."""
    if Path(where).exists():
        return where
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(where, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: hash the id instead
        return where


def cache_info() -> dict:
    """Hits, misses, size and capacity of the pipeline cache."""
    return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE.items), "capacity": _CACHE.size}


def set_cache_size(size: int) -> None:
    """Capacity of the LRU cache of loaded models (>= 1); evicts the oldest beyond it."""
    if size < 1:
        raise ValueError(f"cache size={size} must be >= 1")
    with _CACHE.lock:
        _CACHE.size = size
        while len(_CACHE.items) > size:
            _CACHE.items.popitem(last=False)


def clear_cache() -> None:
    with _CACHE.lock:
        _CACHE.items.clear()
        _CACHE.hits = _CACHE.misses = 0
