"""Metrics that need downloaded weights: CLIP score, LPIPS, FVD.

This machine has no network, so nothing is downloaded: each metric computes only from weights
already on disk (`weights_path`), and otherwise reports `MetricUnavailable` with the reason. It
never falls back to another metric.

- "clip_score": CLIP score as torchmetrics' `clip_score` defines it (100 × cosine of the image and
  text embeddings, mean over frames, floored at 0), from a CLIP model saved locally
  (`CLIPModel.save_pretrained` + `CLIPProcessor.save_pretrained` directory, e.g. a copy of
  openai/clip-vit-base-patch32). Needs `prompt`. Computed through transformers' `CLIPModel`
  directly: torchmetrics 1.9's `clip_score` fails with transformers 5 (`get_image_features` now
  returns a ModelOutput, not a tensor).
- "lpips": torchmetrics' LPIPS (AlexNet backbone, normalize=True) between consecutive frames, mean.
  Needs torchvision and `weights_path` a torch hub directory whose `checkpoints/` holds the
  torchvision AlexNet checkpoint (LPIPS' own linear layers ship with torchmetrics).
- "fvd": Fréchet video distance between `frames` (one video (F, 3, H, W) or a batch (N, F, 3, H, W))
  and `reference` videos (M, F, 3, H, W), from the features of a TorchScript I3D detector at
  `weights_path` with the StyleGAN-V interface (`i3d_torchscript.pt`: called as
  `detector(x, rescale=False, resize=True, return_features=True)` on x (N, 3, F, H, W) in [-1, 1]).
  FVD needs many videos per side for a stable covariance; with few it is noisy.

>>> import torch
>>> result = external_metric("lpips", torch.rand(4, 3, 32, 32))
>>> result.available, "weights" in result.reason or "torchvision" in result.reason
(False, True)
"""
from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io.video import to_uint8
from ._checks import check_choice, check_video

EXTERNAL_METRICS = ("clip_score", "lpips", "fvd")
ON_UNAVAILABLE = ("return", "raise")
NO_NETWORK = "there is no network access here to download them"


@dataclasses.dataclass(frozen=True)
class MetricUnavailable:
    """An external metric that could not be computed, and why. Never a substitute value."""

    name: str
    reason: str
    available: bool = False

    def __str__(self) -> str:
        return f"{self.name} unavailable: {self.reason}"


@dataclasses.dataclass(frozen=True)
class ExternalMetricResult:
    """An external metric computed from local weights."""

    name: str
    value: float
    weights_path: str
    details: dict = dataclasses.field(default_factory=dict)
    available: bool = True


class MetricUnavailableError(RuntimeError):
    """Raised by `external_metric(..., on_unavailable="raise")`; `.result` is the MetricUnavailable."""

    def __init__(self, result: MetricUnavailable):
        super().__init__(str(result))
        self.result = result


class _Unavailable(Exception):
    """Internal: a metric's precondition failed; the message is the reason."""


def _require_module(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise _Unavailable(f"{module} is not installed ({why})")


def _require_path(weights_path, what: str, kind: str) -> Path:
    if weights_path is None:
        raise _Unavailable(f"no weights_path given: it needs {what}, and {NO_NETWORK}")
    path = Path(weights_path)
    if not (path.is_dir() if kind == "dir" else path.is_file()):
        raise _Unavailable(f"weights_path={str(path)!r} is not an existing {'directory' if kind == 'dir' else 'file'} "
                           f"holding {what} ({NO_NETWORK})")
    return path


# ---- the three metrics --------------------------------------------------------------------------

def _clip_score(frames: torch.Tensor, prompt, weights_path, **_) -> ExternalMetricResult:
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"clip_score needs a non-empty prompt string, got {prompt!r}")
    _require_module("transformers", "CLIP runs through transformers")
    path = _require_path(weights_path, "a CLIP model and processor saved with save_pretrained", "dir")
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    except OSError as error:  # files missing from the directory
        raise _Unavailable(f"could not load CLIP from {str(path)!r}: {error}") from error
    images = list(to_uint8(frames.detach().float().clamp(0, 1)))  # uint8 (H, W, 3) each
    inputs = processor(text=[prompt], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)  # image_embeds (F, D) and text_embeds (1, D), unit length
    per_frame = 100 * (output.image_embeds @ output.text_embeds.T)[:, 0]
    value = max(float(per_frame.mean()), 0.0)
    return ExternalMetricResult("clip_score", value, str(path), {"per_frame": per_frame.tolist()})


def _lpips(frames: torch.Tensor, weights_path, **_) -> ExternalMetricResult:
    if frames.shape[0] < 2:
        raise ValueError(f"lpips compares consecutive frames: expected at least 2 frames, got {tuple(frames.shape)}")
    _require_module("torchvision", "torchmetrics' LPIPS takes its AlexNet backbone from torchvision")
    path = _require_path(weights_path, "a torch hub directory whose checkpoints/ holds torchvision's AlexNet weights",
                         "dir")
    import torchvision
    from torchmetrics.functional.image import learned_perceptual_image_patch_similarity

    checkpoint = path / "checkpoints" / Path(torchvision.models.AlexNet_Weights.DEFAULT.url).name
    if not checkpoint.is_file():
        raise _Unavailable(f"{str(checkpoint)!r} does not exist ({NO_NETWORK})")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(path))
    try:
        with torch.no_grad():
            value = learned_perceptual_image_patch_similarity(frames[1:], frames[:-1], net_type="alex",
                                                              reduction="mean", normalize=True)
    finally:
        torch.hub.set_dir(previous)
    return ExternalMetricResult("lpips", float(value), str(path), {"pairs": "consecutive", "net_type": "alex"})


def _frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (N, D)."""
    from scipy import linalg

    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a = np.atleast_2d(np.cov(feats_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(feats_b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def _fvd(frames: torch.Tensor, reference, weights_path, **_) -> ExternalMetricResult:
    videos = frames[None] if frames.ndim == 4 else frames
    if reference is None:
        raise ValueError("fvd needs `reference` videos (M, F, 3, H, W) in [0, 1] to compare with")
    if not isinstance(reference, torch.Tensor) or reference.ndim != 5 or reference.shape[2] != 3:
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise ValueError(f"Expected `reference` to have shape (M, F, 3, H, W), got {shape}")
    if videos.shape[0] < 2 or reference.shape[0] < 2:
        raise ValueError(f"fvd needs at least 2 videos on each side for a covariance, got {videos.shape[0]} "
                         f"generated and {reference.shape[0]} reference")
    path = _require_path(weights_path, "a TorchScript I3D detector (StyleGAN-V's i3d_torchscript.pt)", "file")
    try:
        with warnings.catch_warnings():  # the public I3D weights exist only as TorchScript, deprecated in torch 2.13
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as error:
        raise _Unavailable(f"could not load a TorchScript detector from {str(path)!r}: {error}") from error

    def features(v: torch.Tensor) -> np.ndarray:
        x = v.permute(0, 2, 1, 3, 4).float() * 2 - 1  # (N, 3, F, H, W) in [-1, 1]
        with torch.no_grad():
            return detector(x, rescale=False, resize=True, return_features=True).double().numpy()

    value = _frechet_distance(features(videos), features(reference))
    return ExternalMetricResult("fvd", value, str(path), {"num_generated": videos.shape[0],
                                                         "num_reference": reference.shape[0]})


_METRICS = {"clip_score": _clip_score, "lpips": _lpips, "fvd": _fvd}


def external_metric(name: str, frames: torch.Tensor, *, prompt: str | None = None,
                    reference: torch.Tensor | None = None, weights_path: str | Path | None = None,
                    on_unavailable: str = "return") -> ExternalMetricResult | MetricUnavailable:
    """Compute CLIP score, LPIPS or FVD from local weights, or say why not.

    name: one of EXTERNAL_METRICS. frames: a video (F, 3, H, W) in [0, 1] (for "fvd" also a batch
    (N, F, 3, H, W)). Returns an `ExternalMetricResult` (value, weights used), or, when the weights
    or a package are missing, a `MetricUnavailable` naming the reason (`on_unavailable="return"`)
    or raises `MetricUnavailableError` (`"raise"`). Bad arguments (no prompt for clip_score, no
    reference for fvd) are errors either way.
    """
    check_choice("name", name, EXTERNAL_METRICS)
    check_choice("on_unavailable", on_unavailable, ON_UNAVAILABLE)
    if name == "fvd" and isinstance(frames, torch.Tensor) and frames.ndim == 5:
        for i, video in enumerate(frames):
            check_video(video, name=f"frames[{i}]")
    else:
        check_video(frames)
    if name == "fvd" and isinstance(reference, torch.Tensor) and reference.ndim == 5:
        for i, video in enumerate(reference):
            check_video(video, name=f"reference[{i}]")
    try:
        return _METRICS[name](frames, prompt=prompt, reference=reference, weights_path=weights_path)
    except _Unavailable as why:
        result = MetricUnavailable(name, str(why))
        if on_unavailable == "raise":
            raise MetricUnavailableError(result) from None
        return result

