"""Capture where a diffusion model looks: per-word heat maps and frame × frame attention.

`AttentionCapture` is a context manager over a pipeline (or a bare UNet / transformer):

1. on enter, every selected attention layer gets a `CaptureProcessor` through diffusers'
   `set_attn_processor`; the others keep theirs. A forward pre-hook on the denoiser reads each
   call's timestep (-> step index) and latent grid (batch, frames, height, width);
2. a captured layer first runs its original processor (so the output is exactly the output
   without capture, fused or not), then recomputes its attention probabilities in chunks and
   reduces them at once (`probs.py`) into running sums at the latent resolution (`AttentionAggregator`).
   Memory is the size of the sums, whatever the number of steps;
3. on exit (also after an error) the original processors and hooks are restored.

Layer kinds: "cross" (to the prompt: per-token heat maps), "temporal" (AnimateDiff motion
modules: frame × frame), "joint" (self-attention of a video transformer over all frames' tokens,
as Wan does: frame × frame). Spatial self-attention of image models is not captured.

Classifier-free guidance: only the conditional branch is recorded (half the work). SD and
AnimateDiff batch [uncond, cond] in one call (`cfg_layout="batched"`: the second half of the
rows is kept); Wan calls the transformer for cond, then for uncond (`"sequential"`: the first
call of each step is kept). "auto" reads "batched" from a batch of twice the number of prompts,
and always keeps only the first call of a step; "none" keeps every row of the first call.

>>> pipe = load_backend("shapes-tiny").pipeline("text2img")                  # doctest: +SKIP
>>> with AttentionCapture(pipe, prompt, layers="up_blocks") as capture:       # doctest: +SKIP
...     image = pipe(prompt, num_inference_steps=20, guidance_scale=3.0).images[0]
>>> capture.word_maps()["circle"].shape                                       # doctest: +SKIP
torch.Size([1, 16, 16])
"""
from __future__ import annotations

import dataclasses
import re

import torch

from . import probs
from .maps import WordMaps
from .words import prompt_words

KINDS = ("cross", "temporal", "joint")
CFG_LAYOUTS = ("auto", "batched", "sequential", "none")
_DENOISERS = ("unet", "transformer", "transformer_2")


@dataclasses.dataclass(frozen=True)
class Layer:
    """An attention layer of a denoiser: its name, kind (cross/temporal/joint/spatial) and group."""

    name: str   # as in `attn_processors` without ".processor"; prefixed "transformer_2." for a second expert
    kind: str
    group: str  # the first part of the name: down_blocks, mid_block, up_blocks, blocks, ...


class AttentionAggregator:
    """Running sums and counts of reduced attention, keyed by (kind, group).

    A key's sum has a fixed shape from its first update on: (B, F, T, h, w) heat maps or
    (B, F, F) frame matrices. `mean(key)` is the sum over layers, heads and steps divided by the
    number of layer calls summed.
    """

    def __init__(self):
        self.sums: dict[tuple, torch.Tensor] = {}
        self.counts: dict[tuple, int] = {}

    def update(self, key: tuple, value: torch.Tensor) -> None:
        if key not in self.sums:
            self.sums[key] = value.detach().float().clone()
            self.counts[key] = 1
            return
        if value.shape != self.sums[key].shape:
            raise ValueError(f"attention of shape {tuple(value.shape)} for {key} does not match the running sum "
                             f"{tuple(self.sums[key].shape)}: use one AttentionCapture per generation call")
        self.sums[key] += value.detach().float()
        self.counts[key] += 1

    def keys(self, kind: str | None = None) -> list[tuple]:
        return [k for k in self.sums if kind is None or k[0] == kind]

    def total(self, keys: list[tuple]) -> tuple[torch.Tensor, int]:
        """Sum and count over several keys (e.g. every layer group)."""
        return sum(self.sums[k] for k in keys), sum(self.counts[k] for k in keys)

    def state_shapes(self) -> dict[tuple, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.sums.items()}

    def state_bytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.sums.values())


class CaptureProcessor:
    """Runs the layer's original processor, then hands the layer's inputs to the capture."""

    def __init__(self, original, capture: "AttentionCapture", layer: Layer, recompute=None):
        self.original, self.capture, self.layer = original, capture, layer
        self.recompute = recompute  # the layer's queries/keys function (probs.qk_function)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        if self.capture.recording:
            extra = args[0] if args else kwargs.get("temb", kwargs.get("rotary_emb"))
            with torch.no_grad():
                self.capture._observe(self.layer, attn, hidden_states, encoder_hidden_states, attention_mask, extra,
                                      self.recompute)
        return out


def _denoisers(model) -> dict[str, torch.nn.Module]:
    """The attention-bearing models of a pipeline (unet / transformer / transformer_2), or the model itself."""
    if hasattr(model, "attn_processors") and hasattr(model, "set_attn_processor"):
        return {"": model}
    found = {n: getattr(model, n) for n in _DENOISERS if getattr(model, n, None) is not None}
    if not found:
        raise TypeError(f"model of type {type(model).__name__} is neither a pipeline with a unet/transformer "
                        "nor a diffusers model with attention processors")
    return {("" if i == 0 else f"{n}."): m for i, (n, m) in enumerate(found.items())}


def _is_video_transformer(denoiser) -> bool:
    patch = getattr(getattr(denoiser, "config", None), "patch_size", None)
    return isinstance(patch, (tuple, list)) and len(patch) == 3


def list_layers(model) -> list[Layer]:
    """Every attention layer of a pipeline's denoiser(s), with its kind and group."""
    layers = []
    for prefix, denoiser in _denoisers(model).items():
        video = _is_video_transformer(denoiser)
        for key in denoiser.attn_processors:
            name = key.removesuffix(".processor")
            module = denoiser.get_submodule(name)
            if getattr(module, "is_cross_attention", False):
                kind = "cross"
            elif "motion_modules" in name:
                kind = "temporal"
            else:
                kind = "joint" if video else "spatial"
            full = prefix + name
            layers.append(Layer(full, kind, full.split(".")[0]))
    return layers


def _check_range(name: str, value, integer: bool):
    if value is None:
        return None
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and (not integer or all(float(v).is_integer() for v in value)) and value[0] <= value[1])
    if not ok or (integer and value[0] < 0):
        kind = "two integers (start, stop) with 0 <= start <= stop" if integer else "two numbers (low, high), low <= high"
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {kind}")
    return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)


class AttentionCapture:
    """Context manager that records per-word heat maps and frame × frame attention of one generation.

    model: a diffusers pipeline (its unet / transformer / transformer_2) or a denoiser itself.
    prompts: the prompt(s) of the generation, for words; `tokenizer` defaults to the pipeline's.
    layers: a regular expression searched in layer names (see `list_layers`); None: every layer.
    kinds: which of "cross", "temporal", "joint" to capture.
    steps: (start, stop) step indices, stop excluded; timesteps: (low, high) scheduler timesteps,
        both ends included. A step is captured when it is inside both.
    cfg_layout: "auto", "batched" (one call [uncond, cond]), "sequential" (cond call, then
        uncond call), "none" (no guidance): where the conditional branch is (see the module doc).
    max_chunk_bytes: the largest probability chunk materialized at once.
    """

    def __init__(self, model, prompts: str | list[str] | None = None, tokenizer=None, layers: str | None = None,
                 kinds: tuple[str, ...] = KINDS, steps: tuple[int, int] | None = None,
                 timesteps: tuple[float, float] | None = None, cfg_layout: str = "auto",
                 max_chunk_bytes: int = probs.DEFAULT_CHUNK_BYTES):
        # 1. check inputs
        self.denoisers = _denoisers(model)
        self.prompts = [prompts] if isinstance(prompts, str) else (list(prompts) if prompts is not None else None)
        self.tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if self.prompts is not None and self.tokenizer is None:
            raise ValueError("prompts were given without a tokenizer: pass tokenizer= (the model has none)")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds={kinds!r} is not allowed: choose from {list(KINDS)}")
        if cfg_layout not in CFG_LAYOUTS:
            raise ValueError(f"cfg_layout={cfg_layout!r} is not one of {list(CFG_LAYOUTS)}")
        if not isinstance(max_chunk_bytes, int) or max_chunk_bytes < 1024:
            raise ValueError(f"max_chunk_bytes={max_chunk_bytes!r} must be an integer >= 1024")
        self.steps = _check_range("steps", steps, integer=True)
        self.timesteps = _check_range("timesteps", timesteps, integer=False)
        self.cfg_layout, self.max_chunk_bytes = cfg_layout, max_chunk_bytes
        # 2. select layers
        pattern = re.compile(layers) if layers else None
        all_layers = list_layers(model)
        self.layers = [l for l in all_layers if l.kind in kinds and (pattern is None or pattern.search(l.name))]
        if not self.layers:
            capturable = [l.name for l in all_layers if l.kind in KINDS]
            raise ValueError(f"layers={layers!r} with kinds={list(kinds)} selects no attention layer; "
                             f"capturable layers: {capturable[:12]}{' ...' if len(capturable) > 12 else ''}")
        self.n_tokens = None
        if self.prompts is not None:
            self.n_tokens = max(len(self.tokenizer(p, truncation=True)["input_ids"]) for p in self.prompts)
        # 3. state: running sums, plus O(1) bookkeeping of the calls seen
        self.aggregator = AttentionAggregator()
        self.peak_chunk_bytes = [0]
        self.recording = False
        self._grid, self._half = None, False
        self._step, self._slot, self._last_t = -1, 0, None
        self.steps_seen, self.steps_captured, self.calls_seen = 0, 0, 0
        self._originals, self._hooks = {}, []

    # ---- install / restore -------------------------------------------------------------------

    def __enter__(self) -> "AttentionCapture":
        selected = {l.name: l for l in self.layers}
        try:
            for prefix, denoiser in self.denoisers.items():
                originals = dict(denoiser.attn_processors)
                if any(isinstance(p, CaptureProcessor) for p in originals.values()):
                    raise RuntimeError(f"{type(denoiser).__name__} already has an AttentionCapture installed; "
                                       "nest captures of one model is not supported")
                new = {}
                for key, proc in originals.items():
                    name = key.removesuffix(".processor")
                    layer = selected.get(prefix + name)
                    if layer is None:
                        new[key] = proc
                        continue
                    recompute = probs.qk_function(denoiser.get_submodule(name))
                    if recompute is None:
                        raise TypeError(f"layer {layer.name!r} is a {type(denoiser.get_submodule(name)).__name__}, "
                                        "which capture does not support (diffusers Attention, WanAttention)")
                    new[key] = CaptureProcessor(proc, self, layer, recompute)
                self._originals[prefix] = originals
                denoiser.set_attn_processor(dict(new))  # set_attn_processor pops from the dict it gets
                self._hooks.append(denoiser.register_forward_pre_hook(self._on_denoiser_call, with_kwargs=True))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        for prefix, originals in self._originals.items():
            self.denoisers[prefix].set_attn_processor(dict(originals))
        self._originals = {}
        self.recording = False

    # ---- per call ----------------------------------------------------------------------------

    def _on_denoiser_call(self, module, args, kwargs):
        """Pre-hook: step index from the timestep, call slot within the step, latent grid in tokens."""
        sample = kwargs.get("sample", kwargs.get("hidden_states", args[0] if args else None))
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        t = float(torch.as_tensor(t).float().max()) if t is not None else float(self._step + 1)
        self.calls_seen += 1
        if t != self._last_t:
            self._step, self._slot, self._last_t = self._step + 1, 0, t
            self.steps_seen += 1
        else:
            self._slot += 1  # a second call at one timestep: Wan's unconditional branch
        in_steps = self.steps is None or self.steps[0] <= self._step < self.steps[1]
        in_timesteps = self.timesteps is None or self.timesteps[0] <= t <= self.timesteps[1]
        self.recording = in_steps and in_timesteps and self._slot == 0
        self.steps_captured += self.recording
        b, frames, h, w = sample.shape[0], (sample.shape[2] if sample.ndim == 5 else 1), *sample.shape[-2:]
        if _is_video_transformer(module):
            patch = module.config.patch_size
            frames, h, w = frames // patch[0], h // patch[1], w // patch[2]
        self._half = self._batched(b)
        self._grid = (b // 2 if self._half else b, frames, h, w)

    def _batched(self, rows: int) -> bool:
        """Whether this call's batch is [uncond, cond] (keep the second half)."""
        if self.cfg_layout == "batched":
            if rows % 2:
                raise ValueError(f"cfg_layout='batched' needs an even batch, the denoiser got {rows} rows")
            return True
        return self.cfg_layout == "auto" and self.prompts is not None and rows == 2 * len(self.prompts)

    def _observe(self, layer: Layer, attn, hidden_states, encoder_hidden_states, attention_mask, extra,
                 recompute=None) -> None:
        batch, frames, h, w = self._grid
        if self._half:  # rows are [uncond, cond] (x frames or pixels, batch-major): keep cond
            rows = hidden_states.shape[0]
            hidden_states, encoder_hidden_states, attention_mask, extra = (
                x[rows // 2:] if isinstance(x, torch.Tensor) and x.shape[0] == rows else x
                for x in (hidden_states, encoder_hidden_states, attention_mask, extra))
        query, key, scale = probs.queries_keys(attn, hidden_states, encoder_hidden_states, extra, recompute)
        mask = None
        if attention_mask is not None:
            if not hasattr(attn, "prepare_attention_mask"):
                raise ValueError(f"layer {layer.name!r} got an attention_mask, which capture supports only "
                                 "for diffusers Attention")
            mask = attn.prepare_attention_mask(attention_mask, key.shape[2], query.shape[0])
            mask = mask.view(query.shape[0], attn.heads, -1, key.shape[2])
        opts = dict(max_bytes=self.max_chunk_bytes, peak=self.peak_chunk_bytes)
        if layer.kind == "cross":
            n_tokens = min(self.n_tokens or key.shape[2], key.shape[2])
            value = probs.cross_heat(query, key, scale, batch, frames, h, w, n_tokens, mask, **opts)
        elif layer.kind == "temporal":
            value = probs.temporal_mass(query, key, scale, batch, **opts)
        else:
            value = probs.frame_mass(query, key, scale, batch, frames, **opts)
        self.aggregator.update((layer.kind, layer.group), value)

    # ---- results -----------------------------------------------------------------------------

    def groups(self, kind: str = "cross") -> list[str]:
        """Layer groups with captured attention of `kind`."""
        return sorted({k[1] for k in self.aggregator.keys(kind)})

    def _cond(self, kinds: tuple[str, ...], group: str | None, index: int) -> torch.Tensor:
        """Mean over layers/heads/steps of sample `index` of the conditional branch."""
        keys = [k for k in self.aggregator.sums if k[0] in kinds]
        if not keys:
            raise ValueError(f"no attention of kind {list(kinds)} was captured (steps seen: {self.steps_seen}, "
                             f"captured: {self.steps_captured}; layers: {[l.name for l in self.layers][:6]} ...)")
        if group is not None:
            groups = sorted({k[1] for k in keys})
            if group not in groups:
                raise ValueError(f"group={group!r} has no captured {'/'.join(kinds)} attention; groups: {groups}")
            keys = [k for k in keys if k[1] == group]
        total, count = self.aggregator.total(keys)
        n = total.shape[0]
        if not (isinstance(index, int) and -n <= index < n):
            raise IndexError(f"index={index!r} is out of range: the conditional branch has {n} samples")
        return total[index] / count

    def heat(self, index: int = 0, group: str | None = None) -> torch.Tensor:
        """Per-token heat maps (F, T, h, w) of sample `index` of the conditional branch."""
        return self._cond(("cross",), group, index)

    def word_maps(self, index: int = 0, group: str | None = None) -> WordMaps:
        """Per-word heat maps (tokens of a word summed) of sample `index`; look words up by text."""
        if self.prompts is None:
            raise ValueError("word maps need the prompts: pass prompts= to AttentionCapture")
        heat = self.heat(index, group)
        per_prompt = max(1, self._n_samples() // len(self.prompts))
        prompt = self.prompts[min(index // per_prompt, len(self.prompts) - 1)]
        words = prompt_words(prompt, self.tokenizer)
        words = [w for w in words if max(w.tokens) < heat.shape[1]]
        stacked = torch.stack([heat[:, list(w.tokens)].sum(1) for w in words])  # (n_words, F, h, w)
        return WordMaps(prompt, words, stacked)

    def _n_samples(self) -> int:
        return next(iter(self.aggregator.sums.values())).shape[0]

    def frame_attention(self, index: int = 0, group: str | None = None) -> torch.Tensor:
        """Frame × frame attention (F, F) of sample `index`: row i = how frame i's tokens spread over frames."""
        return self._cond(("temporal", "joint"), group, index)

    def memory(self) -> dict:
        """Bytes held by the running sums and the largest probability chunk made so far."""
        return {"state_bytes": self.aggregator.state_bytes(), "peak_chunk_bytes": self.peak_chunk_bytes[0],
                "state_tensors": len(self.aggregator.sums)}
