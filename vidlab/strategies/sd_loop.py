"""The Stable-Diffusion denoising loop the image-model strategies share.

Adapted from diffusers' `StableDiffusionControlNetImg2ImgPipeline.__call__` (0.42): the same
prompt encoding, classifier-free guidance, ControlNet residuals and img2img start step,
written out so a strategy can (a) encode each prompt once per video, (b) hand in its own
noise (style lock: a fixed noise plus a small per-segment perturbation), (c) keep frames as
tensors on the device, and (d) compute the ControlNet's conditioning embedding once per frame
rather than once per step (it does not depend on the timestep), and (e) call plain attention
directly (`direct_attention`), and (f) replay each step from a recorded graph, checked
bit-equal to eager (`step_graph`). With the same noise it gives the pipeline's frames to within
float rounding (see `experiments/bench_frame_chain.py`).
"""
from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from diffusers.models.activations import GEGLU, GELU
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.normalization import RMSNorm

from ..seeds import step_kwargs
from .step_graph import StepRunner


@dataclasses.dataclass
class PromptCache:
    """Text embeddings computed once per distinct (prompt, negative prompt)."""

    backend: object
    store: dict = dataclasses.field(default_factory=dict)

    def __call__(self, prompt: str, negative_prompt: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        key = (prompt, negative_prompt)
        if key not in self.store:
            pipe = self.backend.pipeline("text2img")
            cond, uncond = pipe.encode_prompt(prompt, self.backend.device, 1, True, negative_prompt or None)
            self.store[key] = (cond, uncond)
        return self.store[key]


def make_noise(seed: int, shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise from a CPU generator seeded with `seed`: identical on every device."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def embed_prompts(backend, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional states (B, L, D), the unconditional state (1, L, D)) of prompts, for `denoise`."""
    pipe = backend.pipeline("text2img")
    cond, uncond = pipe.encode_prompt(prompts, backend.device, 1, True, None)
    return cond, uncond[:1]


def noise_batch(backend, seeds, height: int = 64, width: int = 64) -> torch.Tensor:
    """One latent noise per seed, stacked (B, C, h, w): the same noise as `make_noise` alone."""
    shape = latent_shape(backend, height, width)
    return torch.cat([make_noise(s, shape, backend.device) for s in seeds])


def latent_shape(backend, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
    vae = backend.components["vae"]
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return (batch, backend.components["unet"].config.in_channels, height // factor, width // factor)


@torch.no_grad()
def encode_image(backend, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> scaled latents (posterior mean: deterministic), one image at a time
    (the VAE's kernels round differently at other batch sizes; see `batch_invariant`)."""
    vae = backend.components["vae"]
    x = images.to(backend.device, vae.dtype) * 2 - 1
    return torch.cat([vae.encode(one[None]).latent_dist.mean for one in x]) * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(backend, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> (B, 3, H, W) in [0, 1], float32 on the CPU, one latent at a time."""
    vae = backend.components["vae"]
    images = torch.cat([vae.decode(one[None].to(vae.dtype) / vae.config.scaling_factor).sample for one in latents])
    return (images.float() / 2 + 0.5).clamp(0, 1).cpu()


def _linear_rows_alone(m: torch.nn.Linear):
    """A Linear's forward whose 2-D input rows never share a matrix product: all rows equal (a
    timestep embedding) -> one row, expanded; else one row at a time. 3-D inputs as usual."""
    def forward(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Linear's own argument name
        x = input
        if x.ndim != 2:
            return F.linear(x, m.weight, m.bias)
        if torch.equal(x, x[:1].expand_as(x)):
            return F.linear(x[:1], m.weight, m.bias).expand(x.shape[0], -1)
        return torch.cat([F.linear(row[None], m.weight, m.bias) for row in x])
    return forward


ALIGNED_ROW = 64  # elements: a row of a multiple of this starts and ends on the kernels' vector blocks


def _rows_alone(fn):
    """An elementwise function (a transcendental: tanh-GELU, SiLU, rsqrt) applied to each row
    (index of dim 0) alone where a row is not a multiple of ALIGNED_ROW elements: the vectorized
    kernel finishes a tensor with a scalar loop that rounds differently, so a row that does not
    end on a vector block gets other bits at other batch sizes (measured on this CPU, e.g. Wan's
    77 x 96 text rows; the UNets' frames, multiples of 64, do not need it)."""
    def forward(input: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # noqa: A002
        if input.ndim < 2 or input.shape[0] == 1 or input[0].numel() % ALIGNED_ROW == 0:
            return fn(input, *args, **kwargs)
        return torch.cat([fn(row, *args, **kwargs) for row in input.split(1)])
    return forward


def _conv_in_chunks(m: torch.nn.Conv2d, chunk: int):
    """A 1x1 Conv2d's forward over `chunk` samples at a time (the batch one sample alone makes)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m._conv_forward(part, m.weight, m.bias) for part in x.split(chunk)])
    return forward


def _pointwise_as_matmul(m: torch.nn.Conv2d):
    """A plain 1x1 Conv2d's forward as one matrix product a sample, (O, C) @ (C, H*W), batched:
    every sample goes through the same product whatever the batch size (measured on this CPU at
    1 and 2 threads), and one batched call costs less than many small convolutions."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = torch.matmul(m.weight.flatten(1), x.flatten(2))              # (O, C) @ (B, C, H*W) -> (B, O, H*W)
        if m.bias is not None:
            y = y + m.bias[:, None]
        return y.view(b, -1, h, w)
    return forward


def _is_pointwise(m: torch.nn.Conv2d) -> bool:
    return (m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding in ((0, 0), "valid")
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")


_ELEMENTWISE = (torch.nn.GELU, torch.nn.SiLU, torch.nn.Sigmoid, torch.nn.Tanh, torch.nn.Mish)
_GATED = (GELU, GEGLU)  # diffusers' Linear + activation modules: the activation is `.gelu`


@contextmanager
def batch_invariant(models, chunk: int = 2):
    """Within the block, each sample of a batch comes out bit-identical whatever the batch size.

    On the CPU, MKL's matrix products with few rows (a 2-D Linear input) and oneDNN's 1x1
    convolutions pick other kernels, with other rounding, as the batch grows; 3x3 convolutions,
    3-D Linears, norms and attention give each sample the same bits at every batch size from
    two up (measured; tests/test_batching.py checks the whole loop). So 2-D Linears take their
    rows alone, and plain 1x1 convolutions run as one batched matrix product (one product a
    sample); any other 1x1 convolution takes `chunk` samples at a time (2: a sample and its
    unconditional twin under classifier-free guidance). Elementwise activations and RMSNorm take
    each row alone where a row does not end on a vector block (`_rows_alone`). The VAE runs one
    image at a time (`encode_image`, `decode_latents`). This is what lets several seeds share one
    denoising loop.
    """
    patched = []
    for model in models:
        for m in (model.modules() if model is not None else ()):
            if "forward" in vars(m):
                continue
            if isinstance(m, _ELEMENTWISE) or isinstance(m, RMSNorm):
                m.forward = _rows_alone(m.forward)
            elif isinstance(m, _GATED) and "gelu" not in vars(m):
                m.gelu = _rows_alone(m.gelu)
            elif isinstance(m, torch.nn.Linear):
                m.forward = _linear_rows_alone(m)
            elif isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1):
                m.forward = _pointwise_as_matmul(m) if _is_pointwise(m) else _conv_in_chunks(m, chunk)
            else:
                continue
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del vars(m)["gelu" if "gelu" in vars(m) else "forward"]


@contextmanager
def control_embedding_is(controlnet, embedding: torch.Tensor):
    """Within the block, the ControlNet's conditioning embedding returns `embedding`: it does not
    depend on the timestep, so a loop computes it once."""
    module = controlnet.controlnet_cond_embedding
    own_forward = vars(module).get("forward")  # an instance-level forward someone else set, if any
    module.forward = lambda cond: embedding
    try:
        yield
    finally:
        if own_forward is None:
            del module.forward
        else:
            module.forward = own_forward


class _DirectAttention:
    """A plain `Attention` module's forward as diffusers' `AttnProcessor2_0` computes it, minus what
    repeats for nothing at every step of a small model:

    - diffusers' `Attention.forward` inspects the processor's signature on every call;
    - cross-attention keys and values depend only on the text embeddings, constant over the loop:
      computed on the first step, reused after;
    - self-attention over a batch whose CFG halves are equal (a block before the text enters:
      uncond and cond see the same latents, timestep and control) is computed for one half
      (each half holds one sample per seed of a batch).
    """

    def __init__(self, attn: Attention, text: torch.Tensor | None):
        self.attn, self.text, self.text_kv = attn, text, None

    def __call__(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **cross_attention_kwargs) -> torch.Tensor:
        attn = self.attn
        if attention_mask is not None or cross_attention_kwargs or hidden_states.ndim != 3:
            return attn.processor(attn, hidden_states, encoder_hidden_states, attention_mask, **cross_attention_kwargs)
        b = hidden_states.shape[0]  # hidden_states (B, L, C)
        if encoder_hidden_states is None:
            half = b // 2
            if b % 2 == 0 and torch.equal(hidden_states[:half], hidden_states[half:]):
                return self(hidden_states[:half]).repeat(2, 1, 1)
            key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)
        elif encoder_hidden_states is self.text:
            if self.text_kv is None:
                self.text_kv = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
            key, value = self.text_kv
        else:
            key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query = attn.to_q(hidden_states)
        heads, head_dim = attn.heads, query.shape[-1] // attn.heads
        query, key, value = (x.view(b, -1, heads, head_dim).transpose(1, 2) for x in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)           # (B, heads, L, head_dim)
        return attn.to_out[0](out.transpose(1, 2).reshape(b, -1, heads * head_dim))


def _is_plain(attn: Attention) -> bool:
    """Default processor, no norms or residual inside: what `_DirectAttention` computes exactly.
    Any other processor (an attention-capture one, say) is left alone."""
    return (type(attn.processor) is AttnProcessor2_0 and not attn.training and attn.spatial_norm is None
            and attn.group_norm is None and attn.norm_q is None and attn.norm_k is None and not attn.norm_cross
            and not attn.residual_connection and attn.rescale_output_factor == 1.0)


@contextmanager
def direct_attention(models, text: torch.Tensor):
    """Within the block, the plain attention modules of `models` run `_DirectAttention`;
    `text` (B, T, D) is the encoder_hidden_states every call of the loop passes."""
    modules = [m for model in models if model is not None for m in model.modules()
               if isinstance(m, Attention) and _is_plain(m) and "forward" not in vars(m)]
    for m in modules:
        m.forward = _DirectAttention(m, text)
    try:
        yield
    finally:
        for m in modules:
            del m.forward


@contextmanager
def exact_savings(unet, controlnet, chunk: int, embeds: torch.Tensor, cond_embedding: torch.Tensor | None = None):
    """The loop's savings that change no bit: the ControlNet's conditioning embedding given,
    plain attention called directly, every sample computed as it would be alone."""
    with (control_embedding_is(controlnet, cond_embedding) if controlnet is not None else nullcontext()), \
            direct_attention([unet, controlnet], embeds), batch_invariant([unet, controlnet], chunk):
        yield


def model_step(unet, controlnet, control_scale: float, model_in: torch.Tensor, t: torch.Tensor,
               embeds: torch.Tensor, cond_embedding: torch.Tensor | None = None) -> torch.Tensor:
    """eps of one step (B, C, h, w): the ControlNet's residuals, then the UNet (inside `exact_savings`)."""
    extra = {}
    if controlnet is not None:
        down, mid = controlnet(model_in, t, encoder_hidden_states=embeds, controlnet_cond=cond_embedding,
                               conditioning_scale=control_scale, guess_mode=False, return_dict=False)
        extra = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
    return unet(model_in, t, encoder_hidden_states=embeds, return_dict=False, **extra)[0]


@torch.no_grad()
def denoise(backend, cond: torch.Tensor, uncond: torch.Tensor, noise: torch.Tensor, *,
            num_inference_steps: int, guidance_scale: float, init_latents: torch.Tensor | None = None,
            strength: float = 1.0, control: torch.Tensor | None = None, control_scale: float = 1.0,
            callback=None, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Denoise `noise` (B, C, h, w) into images (B, 3, H, W) in [0, 1].

    generator: for the noise a scheduler draws inside its steps (DDIM with eta > 0, DDPM, ...);
        a list gives each sample of the batch its own (a list of one is that one generator).
    init_latents + strength < 1: img2img (start part-way, from the noised init).
    control (B, 3, H, W) in [0, 1]: ControlNet conditioning with `control_scale`.
    callback(dict): called after every step with i, t, latents.
    """
    unet, scheduler = backend.components["unet"], backend.components["scheduler"]
    device, dtype = backend.device, unet.dtype
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength={strength:.6g} must be in (0, 1]")
    if init_latents is None and strength < 1.0:
        raise ValueError("strength < 1 needs init_latents (img2img)")
    # 1. timesteps; img2img starts at step N - int(N * strength), as the diffusers pipeline does
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if init_latents is not None and strength < 1.0:
        start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
        timesteps = timesteps[start * scheduler.order:]
        if len(timesteps) == 0:
            raise ValueError(f"strength={strength:.6g} with num_inference_steps={num_inference_steps} leaves no step")
        latents = scheduler.add_noise(init_latents.to(device, dtype), noise, timesteps[:1].repeat(noise.shape[0]))
    else:
        latents = noise * scheduler.init_noise_sigma
    # 2. classifier-free guidance batch: [uncond, cond]
    do_cfg = guidance_scale > 1.0
    b = noise.shape[0]
    embeds = torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)]) if do_cfg else cond.expand(b, -1, -1)
    controlnet = backend.components.get("controlnet") if control is not None else None
    tensors, chunk = (embeds,), 2 if do_cfg else 1
    if controlnet is not None:
        control_in = control.to(device, dtype)
        control_in = torch.cat([control_in] * 2) if do_cfg else control_in
        tensors += (controlnet.controlnet_cond_embedding(control_in),)        # once, not once a step
    runner = StepRunner(functools.partial(model_step, unet, controlnet, control_scale),
                        functools.partial(exact_savings, unet, controlnet, chunk), [unet, controlnet],
                        (control_scale, chunk), tensors, _is_plain)
    # 3. denoising loop
    try:
        for i, t in enumerate(timesteps):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = scheduler.scale_model_input(model_in, t)
            eps = runner(model_in, t)
            if do_cfg:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
            latents = scheduler.step(eps, t, latents, return_dict=False, **step_kwargs(scheduler, generator))[0]
            if callback is not None:
                callback({"i": i, "t": int(t), "latents": latents})
    finally:
        runner.close()
    # 4. decode
    return decode_latents(backend, latents)
