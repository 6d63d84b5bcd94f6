"""What a user says a model is: a preset, folder or hub id, with parts replaced, on a device, in a dtype.

One typed block serves the `vidlab generate` flags, a sweep spec's `backend:` block and a video's
manifest (`replay`), so the three cannot drift apart:

>>> spec = BackendSpec(model="sd15-canny", base="/models/sd15", controlnet="/models/canny", dtype="float16")
>>> spec.parts()
{'base': '/models/sd15', 'controlnet': '/models/canny'}
>>> BackendSpec(dtype="half")                            # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ValidationError: dtype: Input should be 'float32', 'float16' or 'bfloat16'
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..config import Strict
from .presets import DTYPES, FAMILIES, PART_HELP, PARTS, Preset, is_hub_id, looks_like_path, resolve



class BackendSpec(Strict):
    """A model to load: `model` (a preset, a local diffusers folder or a hub id), any part of it replaced
    by a folder or hub id, the pipeline family, the device and the dtype (None: the device's default,
    see `loading.default_device_dtype`)."""

    model: str = Field("shapes-tiny", min_length=1, description="a preset name, local folder or hub id")
    family: Literal[FAMILIES] | None = Field(None, description="the pipeline family of a folder or hub id")
    device: str | None = Field(None, min_length=1, description="'cpu', 'cuda', 'cuda:N' or 'mps'")
    dtype: Literal[DTYPES] | None = Field(None, description="weights' dtype; default: the device's")
    base: str | None = Field(None, min_length=1, description=PART_HELP["base"])
    vae: str | None = Field(None, min_length=1, description=PART_HELP["vae"])
    controlnet: str | None = Field(None, min_length=1, description=PART_HELP["controlnet"])
    motion_adapter: str | None = Field(None, min_length=1, description=PART_HELP["motion_adapter"])
    video_unet: str | None = Field(None, min_length=1, description=PART_HELP["video_unet"])
    wan: str | None = Field(None, min_length=1, description=PART_HELP["wan"])

    @field_validator("model", *PARTS)
    @classmethod
    def _home_expanded(cls, value: str | None) -> str | None:
        """'~/models/sd15' names the folder in the user's home, as a shell would."""
        return str(Path(value).expanduser()) if value is not None and value.startswith("~") else value

    def parts(self) -> dict[str, str]:
        """The parts given, by name (what `resolve` replaces in the preset)."""
        return {p: getattr(self, p) for p in PARTS if getattr(self, p) is not None}

    def beyond_model(self) -> dict:
        """Every field given besides `model` (what a sweep point's config carries; {} for a plain model)."""
        return self.model_dump(exclude_none=True, exclude={"model"})

    def preset(self) -> Preset:
        """The preset this spec names, parts replaced; UserInputError naming the field for a model or
        part that is neither a preset, an existing folder nor a hub id."""
        from ..errors import UserInputError
        for part, where in self.parts().items():
            if not Path(where).exists() and not is_hub_id(where):
                what = (f"is a path to no folder (nothing at {Path(where).absolute()})" if looks_like_path(where)
                        else "is neither an existing folder nor a hub id 'org/name'")
                raise UserInputError(part, where, f"{what}; allowed: {PART_HELP[part]}")
        return resolve(self.model, family=self.family, **self.parts())

    def check(self) -> None:
        """Everything told before a model loads: the model, each part, the device."""
        from .checks import check_device
        self.preset()
        check_device(self.device)

    def load(self):
        """The loaded `Backend` (shared through the backend LRU cache)."""
        from .loading import load_backend
        self.check()
        return load_backend(self.model, device=self.device, dtype=self.dtype, family=self.family, **self.parts())

    @classmethod
    def from_record(cls, record: dict, **changes) -> "BackendSpec":
        """The spec a video's manifest (`record["backend"]`) was made with; `changes` (device=, dtype=)
        override it. The parts recorded are the ones loaded, so the replay needs no preset to match."""
        from ..errors import UserInputError
        if record.get("motion_lora"):
            raise UserInputError("backend.motion_lora", record["motion_lora"],
                                 "is a part vidlab no longer loads (the motion LoRA was retired); "
                                 "regenerate with a model that has no such part")
        from .presets import PRESETS
        dtype = str(record.get("dtype", "")).removeprefix("torch.") or None
        preset = PRESETS.get(record["model"])  # a preset's own parts stay its own (the zoo moves with the clone)
        parts = {p: record.get(p) for p in PARTS if preset is None or record.get(p) != getattr(preset, p)}
        fields = {"model": record["model"], "family": record.get("family"), "dtype": dtype,
                  "device": record.get("device"), **parts}
        fields.update({k: v for k, v in changes.items() if v is not None})
        return cls(**fields)
