"""Tests for vidlab.metrics, each metric against an independent reference.

PSNR/SSIM against scikit-image (and torchmetrics for the reflect border); Lab/ΔE against
skimage.color; flicker, seams, colour drift, adherence, consistency, curves and FVD against values
computed by hand. Videos come from the shapes world (`vidlab.world.render_clip`), 64x64, few frames.
"""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.color import deltaE_cie76, rgb2lab
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

import vidlab.metrics.image as image_module
from vidlab.metrics import (SEED001_DECAY_TABLE, WARP_ERROR_LABEL, MetricUnavailable, MetricUnavailableError,
                            adherence, color_drift, consistency_score_1_to_5, external_metric, flicker,
                            frame_similarity, gap_curve, psnr_anchor, psnr_consecutive, psnr_gap, psnr_pairs,
                            rgb_to_lab, seam_metrics, segment_curve, segment_table, ssim_anchor, ssim_consecutive,
                            ssim_gap, ssim_pairs, subject_consistency, subject_matches, summarize_over_seeds,
                            t_interval, video_metrics, warp_error)
from vidlab.world import BACKGROUNDS, COLORS, Scene, render_clip

# Float32 batched maths against scikit-image's per-image float32/64 maths: observed differences are
# ~3e-6 (SSIM) and ~3e-6 dB (PSNR); the bounds leave margin for other BLAS builds.
SSIM_ATOL = 1e-5
PSNR_ATOL_DB = 1e-4
SK_SSIM = dict(channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def noisy_clip(num_frames=8, seed=0, direction="right"):
    """A moving red circle on beige with mild noise (so no two frames are identical)."""
    clip = render_clip(Scene("circle", "red", "beige", "left", "medium"), num_frames, direction, "quickly")
    noise = 0.03 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(seed))
    return (clip + noise).clamp(0, 1)


def hwc(frame):
    return frame.permute(1, 2, 0).double().numpy()


def uniform_video(values):
    """Frames of one flat grey level each: (F, 3, 16, 16)."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 16, 16).clone()


# ---- PSNR and SSIM ------------------------------------------------------------------------------

def test_consecutive_psnr_ssim_match_skimage():
    video = noisy_clip()
    ref_psnr = [sk_psnr(hwc(a), hwc(b), data_range=1.0) for a, b in zip(video[:-1], video[1:])]
    ref_ssim = [sk_ssim(hwc(a), hwc(b), **SK_SSIM) for a, b in zip(video[:-1], video[1:])]
    psnr, ssim = psnr_consecutive(video), ssim_consecutive(video)
    assert psnr.shape == ssim.shape == (7,)
    np.testing.assert_allclose(psnr.numpy(), ref_psnr, atol=PSNR_ATOL_DB, rtol=0)
    np.testing.assert_allclose(ssim.numpy(), ref_ssim, atol=SSIM_ATOL, rtol=0)
    assert float(ssim_consecutive(video, reduction="mean")) == pytest.approx(np.mean(ref_ssim), abs=SSIM_ATOL)
    assert float(psnr_consecutive(video, reduction="mean")) == pytest.approx(np.mean(ref_psnr), abs=PSNR_ATOL_DB)


def test_anchor_and_gap_match_skimage():
    video = noisy_clip(6, seed=1)
    ref_ssim = [sk_ssim(hwc(video[2]), hwc(f), **SK_SSIM) for f in video]
    ref_psnr = [sk_psnr(hwc(video[2]), hwc(f), data_range=1.0) for j, f in enumerate(video) if j != 2]
    ssim = ssim_anchor(video, anchor=2)
    psnr = psnr_anchor(video, anchor=2)
    np.testing.assert_allclose(ssim.numpy(), ref_ssim, atol=SSIM_ATOL, rtol=0)
    assert math.isinf(psnr[2]) and psnr.shape == (6,)
    np.testing.assert_allclose(np.delete(psnr.numpy(), 2), ref_psnr, atol=PSNR_ATOL_DB, rtol=0)
    # the mean leaves the anchor itself out
    ref_mean = np.mean(np.delete(ref_ssim, 2))
    assert float(ssim_anchor(video, 2, reduction="mean")) == pytest.approx(ref_mean, abs=SSIM_ATOL)
    assert float(psnr_anchor(video, 2, reduction="mean")) == pytest.approx(np.mean(ref_psnr), abs=PSNR_ATOL_DB)
    # an anchor tensor equal to frame 2 gives the same values; frames Δt = 3 apart
    np.testing.assert_allclose(ssim_anchor(video, video[2].clone()).numpy(), ssim.numpy(), atol=1e-6)
    ref_gap = [sk_ssim(hwc(video[t]), hwc(video[t + 3]), **SK_SSIM) for t in range(3)]
    np.testing.assert_allclose(ssim_gap(video, 3).numpy(), ref_gap, atol=SSIM_ATOL, rtol=0)
    ref_gap_psnr = [sk_psnr(hwc(video[t]), hwc(video[t + 3]), data_range=1.0) for t in range(3)]
    np.testing.assert_allclose(psnr_gap(video, 3).numpy(), ref_gap_psnr, atol=PSNR_ATOL_DB, rtol=0)


def test_ssim_reflect_border_matches_torchmetrics_default():
    # compared in float64: the same algorithm agrees to ~1e-14. (In float32 torchmetrics' own
    # rounding error is ~3e-5 against float64, ours ~2e-6: its E[x^2] - mu^2 cancels more digits.)
    video = noisy_clip(5, seed=2).double()
    reference = tm_ssim(video[1:], video[:-1], data_range=1.0, reduction="none")
    np.testing.assert_allclose(ssim_consecutive(video, border_type="reflect").numpy(), reference.numpy(), atol=1e-10)
    # the two border conventions differ, by the border pixels only
    assert not torch.allclose(ssim_consecutive(video), reference, atol=1e-4)


def test_pairs_frame_similarity_and_chunking_agree(monkeypatch):
    video = noisy_clip(7, seed=3)
    sims = frame_similarity(video, anchor=0)
    torch.testing.assert_close(sims["ssim_consecutive"], ssim_consecutive(video), atol=1e-6, rtol=0)
    torch.testing.assert_close(sims["ssim_anchor"], ssim_anchor(video), atol=1e-6, rtol=0)
    torch.testing.assert_close(sims["psnr_anchor"], psnr_anchor(video))
    torch.testing.assert_close(ssim_pairs(video[:-1], video[1:]), ssim_consecutive(video), atol=1e-6, rtol=0)
    torch.testing.assert_close(psnr_pairs(video[:-1], video[1:]), psnr_consecutive(video))
    # chunks of 2 pairs give the same numbers as one batch
    monkeypatch.setattr(image_module, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(image_module, "_MIN_CHUNK_PAIRS", 2)
    chunked = frame_similarity(video, anchor=0)
    for key in sims:
        torch.testing.assert_close(chunked[key], sims[key], atol=1e-6, rtol=0)


def test_psnr_of_known_mse_and_identical_frames():
    video = uniform_video([0.5, 0.6, 0.6])  # MSE 0.01 -> 20 dB, then identical -> inf
    psnr = psnr_consecutive(video)
    assert psnr[0].item() == pytest.approx(20.0, abs=1e-4) and math.isinf(psnr[1])
    # identical flat frames: SSIM 1 up to float32 cancellation in var = E[x^2] - E[x]^2 (exact in float64)
    assert ssim_consecutive(video)[1].item() == pytest.approx(1.0, abs=1e-3)
    assert ssim_consecutive(video.double())[1].item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(4, 16, 16), r"Expected `frames` to have shape \(F, 3, H, W\), got \(4, 16, 16\)"),
    (torch.rand(4, 1, 16, 16), r"shape \(F, 3, H, W\), got \(4, 1, 16, 16\)"),
    (torch.rand(1, 3, 16, 16), r"at least 2 frames .* got shape \(1, 3, 16, 16\)"),
    (torch.rand(4, 3, 8, 16), r"at least 11x11 pixels, got shape \(4, 3, 8, 16\)"),
    (torch.rand(4, 3, 16, 16) * 2, r"values in \[0, 1\], got min="),
])
def test_ssim_shape_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        ssim_consecutive(bad)


def test_argument_errors():
    video = torch.rand(4, 3, 16, 16)
    with pytest.raises(TypeError, match="floating point"):
        psnr_consecutive((video * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"same shape .* got \(3, 3, 16, 16\) and \(4, 3, 16, 16\)"):
        psnr_pairs(video[:3], video)
    with pytest.raises(ValueError, match=r"border_type='same' is not one of \['valid', 'reflect'\]"):
        ssim_consecutive(video, border_type="same")
    with pytest.raises(ValueError, match=r"reduction='sum' is not one of"):
        ssim_consecutive(video, reduction="sum")
    with pytest.raises(ValueError, match=r"gap=4 is not a frame gap in \[1, 3\]"):
        ssim_gap(video, 4)
    with pytest.raises(ValueError, match=r"anchor=5 is not a frame index in \[-4, 3\]"):
        psnr_anchor(video, 5)
    with pytest.raises(ValueError, match=r"`anchor` to have shape \(3, 16, 16\) .* got \(3, 8, 8\)"):
        ssim_anchor(video, torch.rand(3, 8, 8))


# ---- flicker, warp error, seams ------------------------------------------------------------------

def test_flicker_hand_computed():
    # grey levels 0, 0.2, 0.2, 1.0: MAE in 0-255 = 51, 0, 204 -> (255 - MAE) / 255 = 0.8, 1, 0.2
    scores = flicker(uniform_video([0.0, 0.2, 0.2, 1.0]))
    np.testing.assert_allclose(scores.numpy(), [0.8, 1.0, 0.2], atol=1e-6)
    assert float(flicker(uniform_video([0.0, 0.2, 0.2, 1.0]), reduction="mean")) == pytest.approx(2 / 3, abs=1e-6)
    # half the pixels change by 1.0: MAE 127.5 -> 0.5
    video = torch.zeros(2, 3, 4, 4)
    video[1, :, :2] = 1.0
    assert flicker(video).item() == pytest.approx(0.5)


def textured_frames(shift=2, size=64, seed=0):
    """Two crops of one smooth random texture, the second moved `shift` pixels right."""
    import cv2
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((size + 16, size + 16, 3)).astype(np.float32), (0, 0), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    a = texture[8:8 + size, 8:8 + size]
    b = texture[8:8 + size, 8 - shift:8 - shift + size]  # content moves right by `shift`
    return torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).contiguous()


def test_warp_error_translation_identity_and_unrelated():
    moved = warp_error(textured_frames(shift=2))
    unrelated_pair = torch.stack([textured_frames(seed=1)[0], textured_frames(seed=2)[0]])
    unrelated = warp_error(unrelated_pair)
    still = warp_error(textured_frames(shift=0))
    assert moved.per_pair.shape == (1,) and moved.label == WARP_ERROR_LABEL
    assert "Farneback" in moved.label and "not comparable with RAFT" in moved.label
    assert still.mean < 1e-5                          # identical frames: ~0
    assert moved.mean < 0.1 * unrelated.mean          # flow explains a translation
    assert moved.valid_fraction.item() > 0.8          # most pixels pass the consistency check
    record = moved.as_dict()
    assert record["warp_error_label"] == WARP_ERROR_LABEL and record["warp_error_type"] == "squared"
    absolute = warp_error(textured_frames(shift=2), error_type="absolute")
    assert absolute.mean > moved.mean                 # |d| > d^2 for differences below 1


def test_warp_error_errors():
    with pytest.raises(ValueError, match=r"error_type='l1' is not one of \['squared', 'absolute'\]"):
        warp_error(torch.rand(3, 3, 16, 16), error_type="l1")
    with pytest.raises(ValueError, match=r"at least 2 frames"):
        warp_error(torch.rand(1, 3, 16, 16))


def test_seam_metrics_hand_computed():
    # 7 frames, segments start at 0, 3, 5: pairs (2,3) and (4,5) cross a seam
    per_pair = [0.9, 0.8, 0.3, 0.9, 0.5, 1.0]
    seams = seam_metrics(per_pair, segment_starts=[0, 3, 5])
    assert seams["num_across"] == 2 and seams["num_within"] == 4
    assert seams["across_seam"] == pytest.approx(0.4)
    assert seams["within_segment"] == pytest.approx((0.9 + 0.8 + 0.9 + 1.0) / 4)
    assert seams["difference"] == pytest.approx(0.4 - 0.9)
    assert seams["ratio"] == pytest.approx(0.4 / 0.9)
    # a window of 1 pair around the seam at frame 3: pairs 1, 2, 3
    windowed = seam_metrics(per_pair, segment_starts=[3], seam_window=1)
    assert windowed["num_across"] == 3 and windowed["across_seam"] == pytest.approx((0.8 + 0.3 + 0.9) / 3)
    # NaN pairs (e.g. warp error with no valid pixel) are left out of the means
    assert seam_metrics([float("nan"), 1.0, 0.5], [2])["within_segment"] == pytest.approx(0.5)


def test_seam_metrics_errors():
    with pytest.raises(ValueError, match=r"segment_starts entry 7 is not a frame index in \[0, 6\]"):
        seam_metrics([1.0] * 6, [0, 7])
    with pytest.raises(ValueError, match="strictly increasing"):
        seam_metrics([1.0] * 6, [4, 2])
    with pytest.raises(ValueError, match=r"shape \(F - 1,\)"):
        seam_metrics([[1.0, 2.0]], [1])


# ---- colour drift --------------------------------------------------------------------------------

def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(0)
    colors = np.concatenate([rng.random((50, 3)), np.array(list(COLORS.values()) + list(BACKGROUNDS.values())) / 255,
                             [[0, 0, 0], [1, 1, 1], [0.01, 0.02, 0.03]]])
    ours = rgb_to_lab(torch.from_numpy(colors)).numpy()
    np.testing.assert_allclose(ours, rgb2lab(colors[None])[0], atol=1e-8)


def test_color_drift_hand_cases():
    red, blue, white = (np.array(COLORS[c]) / 255 for c in ("red", "blue", "yellow"))
    video = torch.tensor(np.stack([red, red, blue, white]), dtype=torch.float32)[:, :, None, None].expand(-1, 3, 8, 8)
    colors = video[:, :, 0, 0].double().numpy()
    expected = deltaE_cie76(rgb2lab(colors[:1][None]), rgb2lab(colors[None]))[0]
    drift = color_drift(video.contiguous())
    np.testing.assert_allclose(drift.numpy(), expected, atol=1e-6)
    assert drift[0] == 0 and drift[1] == 0
    assert float(color_drift(video, reduction="mean")) == pytest.approx(expected[1:].mean(), abs=1e-6)


def test_color_drift_with_subject_mask():
    # the subject turns from red to orange on a white background; the mask isolates it
    red = render_clip(Scene("circle", "red", "white", "center", "large"), 2)
    orange = render_clip(Scene("circle", "orange", "white", "center", "large"), 2)
    video = torch.cat([red, orange])
    masks = (video - video[:, :, :1, :1]).abs().sum(1) > 0.5   # far from the corner (background) colour
    subject = color_drift(video, masks=masks)
    whole = color_drift(video)
    mean_red = video[0].permute(1, 2, 0)[masks[0]].double().mean(0).numpy()
    mean_orange = video[2].permute(1, 2, 0)[masks[2]].double().mean(0).numpy()
    assert subject[2].item() == pytest.approx(float(deltaE_cie76(rgb2lab(mean_red), rgb2lab(mean_orange))), abs=1e-6)
    assert subject[2] > 3 * whole[2]       # the background dilutes the whole-frame mean
    empty = masks.clone()
    empty[3] = False
    assert math.isnan(color_drift(video, masks=empty)[3])
    with pytest.raises(ValueError, match=r"`masks` to have shape \(4, 64, 64\) \(F, H, W\), got \(4, 64\)"):
        color_drift(video, masks=masks[:, 0])
    with pytest.raises(TypeError, match="boolean tensor"):
        color_drift(video, masks=masks.float())


# ---- shapes world: adherence, consistency --------------------------------------------------------

def test_adherence_counts_frames():
    # the circle starts at x = 10.3 and moves right 4 px a frame: x = 10.3 ... 22.3; the left cell
    # ends at 64 / 3 = 21.3, so frames 0-2 are "left" and frame 3 "center"
    clip = render_clip(Scene("circle", "red", "white", "left", "medium", center=(10.3, 32.0)), 4, "right", "slowly")
    scores = adherence(clip, "a red circle in the left on a white background")
    assert scores == {"shape": 1.0, "color": 1.0, "background": 1.0, "position": 0.75, "overall": 3.75 / 4}
    assert adherence(clip, "a blue circle on a white background") == {
        "shape": 1.0, "color": 0.0, "background": 1.0, "overall": 2 / 3}
    assert adherence(clip, "a square") == {"shape": 0.0, "overall": 0.0}
    with pytest.raises(ValueError, match=r"names none of \['shape', 'color', 'background', 'position'\]"):
        adherence(clip, "a cat eating bamboo")


def test_subject_consistency_and_missing_subject():
    red = render_clip(Scene("square", "red", "gray", "center", "large"), 4, "left")
    blue = render_clip(Scene("square", "blue", "gray", "center", "large"), 3, "left")
    blank = torch.tensor(BACKGROUNDS["gray"], dtype=torch.float32)[None, :, None, None].expand(1, 3, 64, 64) / 255
    video = torch.cat([red, blue, blank])                  # 8 frames: 4 red, 3 blue, 1 without subject
    assert subject_matches(video).tolist() == [True] * 4 + [False] * 4
    assert subject_consistency(video) == pytest.approx(3 / 7)        # frames 1-3 of the 7 others
    assert subject_consistency(red) == 1.0
    assert subject_consistency(torch.cat([blank, red])) == 0.0       # no subject in the reference


def test_consistency_scale_and_seed001_table():
    assert consistency_score_1_to_5(0.0) == 1.0 and consistency_score_1_to_5(1.0) == 5.0
    assert consistency_score_1_to_5(0.5) == 3.0
    np.testing.assert_allclose(consistency_score_1_to_5(np.array([0.95, 0.675])), [4.8, 3.7])
    torch.testing.assert_close(consistency_score_1_to_5(torch.tensor([0.825])), torch.tensor([4.3]))
    with pytest.raises(ValueError, match=r"consistency fraction in \[0, 1\], got 1.2"):
        consistency_score_1_to_5(1.2)
    table = pd.DataFrame(SEED001_DECAY_TABLE)
    assert table["segments"].tolist() == ["2", "4", "6", "8+"]
    assert table["score"].tolist() == [4.8, 4.3, 3.7, 3.0]
    assert table["relation"].tolist() == ["=", "=", "=", "<"]


# ---- curves --------------------------------------------------------------------------------------

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975, 2 degrees of freedom (statistical tables)


def test_t_interval_hand_computed():
    out = t_interval([1.0, 2.0, 3.0, float("nan")])
    assert out["n"] == 3 and out["mean"] == 2.0 and out["std"] == pytest.approx(1.0)
    assert out["ci_low"] == pytest.approx(2 - T_975_DF2 / math.sqrt(3))
    assert out["ci_high"] == pytest.approx(2 + T_975_DF2 / math.sqrt(3))
    single = t_interval([5.0])
    assert single["mean"] == 5.0 and math.isnan(single["std"]) and math.isnan(single["ci_low"])
    with pytest.raises(ValueError, match=r"level=1.5 is not in \(0, 1\)"):
        t_interval([1.0, 2.0], level=1.5)


def test_segment_curve_hand_computed():
    # per-frame values = frame index + seed; segments [0, 3), [3, 6), [6, 8); frame 0 (the anchor) left out
    videos = {seed: torch.rand(8, 3, 16, 16) for seed in (0, 1, 2)}
    seeds = iter(videos)

    def index_plus_seed(frames):
        return torch.arange(8, dtype=torch.float64) + next(seeds)

    table = segment_table(videos, segment_starts=[0, 3, 6], metric=index_plus_seed)
    assert table.shape == (9, 3)
    assert table[table.seed == 0]["value"].tolist() == [1.5, 4.0, 6.5]
    curve = summarize_over_seeds(table, "segment")
    assert curve["segment"].tolist() == [0, 1, 2] and curve["n"].tolist() == [3, 3, 3]
    np.testing.assert_allclose(curve["mean"], [2.5, 5.0, 7.5])
    np.testing.assert_allclose(curve["std"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(curve["ci_high"] - curve["mean"], [T_975_DF2 / math.sqrt(3)] * 3)
    assert curve.attrs["ci"] == "95% Student t"


def test_segment_curve_subject_consistency_decays():
    # a red circle; from frame 4 on the colour changes in seed 1 only
    red = render_clip(Scene("circle", "red", "white", "center", "large"), 8)
    drifted = red.clone()
    drifted[4:] = render_clip(Scene("circle", "green", "white", "center", "large"), 4)
    curve = segment_curve([red, drifted], segment_starts=[4], metric="subject_consistency")
    np.testing.assert_allclose(curve["mean"], [1.0, 0.5])
    with pytest.raises(ValueError, match=r"segment metric='lpips' is not one of"):
        segment_table([red], [4], metric="lpips")


def test_gap_curve_hand_computed():
    # grey ramps with step s: frames Δt apart differ by s·Δt everywhere -> PSNR = -20 log10(s·Δt)
    videos = {s: uniform_video([s * t for t in range(5)]) for s in (0.05, 0.1)}
    curve = gap_curve(videos, gaps=[1, 2], metric="psnr")
    expected = {g: [-20 * math.log10(s * g) for s in videos] for g in (1, 2)}
    np.testing.assert_allclose(curve["mean"], [np.mean(expected[1]), np.mean(expected[2])], atol=1e-3)
    np.testing.assert_allclose(curve["std"], [np.std(expected[1], ddof=1), np.std(expected[2], ddof=1)], atol=1e-3)
    assert gap_curve(videos, metric="psnr")["gap"].tolist() == [1, 2, 3, 4]


# ---- external metrics ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [("clip_score", {"prompt": "a red circle"}), ("lpips", {}),
                                          ("fvd", {"reference": torch.rand(2, 4, 3, 16, 16)})])
def test_external_metrics_unavailable_without_weights(name, kwargs):
    frames = torch.rand(2, 4, 3, 16, 16) if name == "fvd" else torch.rand(4, 3, 16, 16)
    result = external_metric(name, frames, **kwargs)
    assert isinstance(result, MetricUnavailable) and not result.available and result.name == name
    assert ("no weights_path given" in result.reason and "no network" in result.reason) or \
        "torchvision is not installed" in result.reason
    with pytest.raises(MetricUnavailableError, match=f"{name} unavailable: "):
        external_metric(name, frames, on_unavailable="raise", **kwargs)


def test_external_metric_argument_errors(tmp_path):
    video = torch.rand(4, 3, 16, 16)
    missing = external_metric("fvd", torch.rand(2, 4, 3, 16, 16), reference=torch.rand(2, 4, 3, 16, 16),
                              weights_path=tmp_path / "i3d.pt")
    assert "is not an existing file" in missing.reason and "i3d.pt" in missing.reason
    with pytest.raises(ValueError, match=r"name='inception' is not one of \['clip_score', 'lpips', 'fvd'\]"):
        external_metric("inception", video)
    with pytest.raises(ValueError, match="clip_score needs a non-empty prompt"):
        external_metric("clip_score", video)
    with pytest.raises(ValueError, match=r"fvd needs `reference`"):
        external_metric("fvd", video)


def save_tiny_clip(root):
    """A randomly initialised tiny CLIP model + processor saved like a real checkpoint (no download)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                   crop_size={"height": 32, "width": 32}),
                              tokenizer=CLIPTokenizer())
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return model, processor


def test_clip_score_from_a_local_model(tmp_path):
    pytest.importorskip("transformers")
    model, processor = save_tiny_clip(tmp_path / "clip")
    video = noisy_clip(3)
    result = external_metric("clip_score", video, prompt="a red circle", weights_path=tmp_path / "clip")
    # reference: the embeddings through the model's towers and projections, cosine x 100
    images = [(f.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for f in video]
    inputs = processor(text=["a red circle"], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
        text = model.text_projection(model.text_model(input_ids=inputs["input_ids"],
                                                      attention_mask=inputs["attention_mask"]).pooler_output)
    cosine = torch.nn.functional.cosine_similarity(image, text)
    assert result.available and result.weights_path == str(tmp_path / "clip")
    np.testing.assert_allclose(result.details["per_frame"], (100 * cosine).numpy(), atol=1e-4)
    assert result.value == pytest.approx(max(float(100 * cosine.mean()), 0.0), abs=1e-4)
    (tmp_path / "empty").mkdir()
    broken = external_metric("clip_score", video, prompt="a red circle", weights_path=tmp_path / "empty")
    assert not broken.available and "could not load CLIP" in broken.reason


class _MeanFeature(torch.nn.Module):
    """A stand-in I3D with StyleGAN-V's call signature: one feature, the mean of each video."""

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3, 4))[:, None]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fvd_with_a_local_torchscript_detector(tmp_path):
    path = tmp_path / "detector.pt"
    torch.jit.script(_MeanFeature()).save(str(path))
    generated = torch.stack([torch.full((4, 3, 16, 16), v) for v in (0.2, 0.4, 0.6)])
    reference = torch.stack([torch.full((4, 3, 16, 16), v) for v in (0.5, 0.6, 0.7, 0.8)])
    result = external_metric("fvd", generated, reference=reference, weights_path=path)
    # 1-D features v*2-1; Fréchet distance of 1-D Gaussians = (m1 - m2)^2 + (s1 - s2)^2 (std with ddof 1)
    f_gen, f_ref = np.array([0.2, 0.4, 0.6]) * 2 - 1, np.array([0.5, 0.6, 0.7, 0.8]) * 2 - 1
    expected = (f_gen.mean() - f_ref.mean()) ** 2 + (f_gen.std(ddof=1) - f_ref.std(ddof=1)) ** 2
    assert result.available and result.name == "fvd" and result.value == pytest.approx(expected, abs=1e-6)


# ---- the summary row -----------------------------------------------------------------------------

def test_video_metrics_row():
    clip = noisy_clip(8, seed=4)
    row = video_metrics(clip, prompt="a red circle on a beige background", segment_starts=[0, 4])
    assert row["num_frames"] == 8
    assert row["ssim_consecutive"] == pytest.approx(float(ssim_consecutive(clip, reduction="mean")), abs=1e-6)
    assert row["psnr_anchor"] == pytest.approx(float(psnr_anchor(clip, reduction="mean")), abs=1e-4)
    assert row["flicker"] == pytest.approx(float(flicker(clip, reduction="mean")))
    assert row["color_drift"] == pytest.approx(float(color_drift(clip, reduction="mean")))
    assert row["warp_error_label"] == WARP_ERROR_LABEL
    seams = seam_metrics(ssim_consecutive(clip), [0, 4])
    assert row["ssim_across_seam"] == pytest.approx(seams["across_seam"], abs=1e-6)
    assert row["ssim_seam_difference"] == pytest.approx(seams["difference"], abs=1e-6)
    assert row["adherence"] == 1.0 and row["adherence_color"] == 1.0 and "adherence_position" not in row
    assert row["subject_consistency"] == 1.0 and row["subject_consistency_1_to_5"] == 5.0
    plain = video_metrics(clip)
    assert not any(k.startswith(("adherence", "subject", "ssim_across")) for k in plain)
    with pytest.raises(TypeError, match="frame index"):
        video_metrics(clip, anchor=clip[0])
