"""The shipped offline zoo: diffusers format, safetensors only, loads offline, and its measured quality."""
import json

import pytest
import torch

from vidlab.backends import ZOO_PATH, load_backend
from vidlab.training import evaluation as ev

pytestmark = pytest.mark.skipif(not (ZOO_PATH / "model_index.json").exists(), reason="zoo not exported")


def test_zoo_is_safetensors_only_and_small():
    files = [p for p in ZOO_PATH.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".safetensors")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20


def test_pipelines_load_offline_from_the_package_path(monkeypatch):
    import diffusers as d
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kw = dict(safety_checker=None, requires_safety_checker=False, use_safetensors=True)
    controlnet = d.ControlNetModel.from_pretrained(ZOO_PATH / "controlnet", use_safetensors=True)
    for cls, extra in ((d.StableDiffusionPipeline, {}), (d.StableDiffusionImg2ImgPipeline, {}),
                       (d.StableDiffusionControlNetPipeline, {"controlnet": controlnet}),
                       (d.StableDiffusionControlNetImg2ImgPipeline, {"controlnet": controlnet})):
        pipe = cls.from_pretrained(ZOO_PATH, **kw, **extra)
        assert pipe.unet.config.sample_size * pipe.vae_scale_factor >= 64
    out = d.StableDiffusionPipeline.from_pretrained(ZOO_PATH, **kw)(
        "a red circle in the center on a white background", num_inference_steps=4, height=64, width=64,
        output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, 64, 64)


def test_preset_points_at_the_zoo():
    backend = load_backend("shapes-tiny", device="cpu")
    assert backend.preset.base == str(ZOO_PATH)
    assert {"text2img", "img2img", "controlnet", "controlnet_img2img"} <= set(backend.kinds)


def test_model_card_reports_measured_numbers():
    """The card's rows are eval.json's numbers, each in its own row, not numbers that happen to appear."""
    card = (ZOO_PATH / "MODEL_CARD.md").read_text()
    measured = json.loads((ZOO_PATH / "eval.json").read_text())
    t2i, i2i = measured["text_to_image"], measured["img2img"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    for word, key, target in (("colour", "color", 90), ("shape", "shape", 80), ("background", "background", 90),
                              ("position cell", "position", 60)):
        assert f"| {word} | {pct(t2i[key])} | {pct(t2i[key + '_heldout'])} | >= {target}% |" in card, word
    for scale, row in measured["controlnet"].items():
        if scale.startswith("scale_"):
            assert (f"| {scale[6:]} | {pct(row['centroid_within_3px'])} | {row['median_centroid_error_px']:.2f} px "
                    f"| {row['edge_f1']:.3f} |") in card, scale
    assert f"all attributes kept in **{pct(i2i['all_attributes_kept'])}**" in card


def test_text_to_image_quality_conservative_bounds():
    """40 prompts (8 from held-out colour-shape combos): bounds well below the card's 200-prompt numbers."""
    backend = load_backend("shapes-tiny", device="cpu")
    r = ev.text_to_image(backend, n=40, seed=2024, guidance_scale=3.0, batch=40)
    # measured here: colour, background, position 40/40, shape 39/40 (the card's 200 prompts: 100, 100, 100,
    # 94.5%); one prompt of slack for another CPU's rounding
    assert r["color"] >= 39 / 40 and r["background"] >= 39 / 40 and r["position"] >= 39 / 40
    assert r["shape"] >= 38 / 40 and r["shape_heldout"] >= 7 / 8


def test_img2img_keeps_attributes():
    backend = load_backend("shapes-tiny", device="cpu")
    r = ev.img2img(backend, n=20, strength=0.3, batch=20)
    # measured here 20/20 (98% on the card's 100 frames, 96.7% on its 300-frame check)
    assert r["all_attributes_kept"] >= 19 / 20 and r["color"] == 1.0


def test_controlnet_follows_edges_more_with_scale():
    backend = load_backend("shapes-tiny", device="cpu")
    r = ev.controlnet(backend, n=16, scales=(0.0, 1.0), batch=16)
    # measured here: edge F1 0.555 -> 0.764, centroid within 3 px 13/16 -> 15/16, median error 2.28 -> 1.02 px
    assert r["scale_1.0"]["edge_f1"] >= r["scale_0.0"]["edge_f1"] + 0.15 and r["scale_1.0"]["edge_f1"] >= 0.72
    assert r["scale_1.0"]["centroid_within_3px"] >= 14 / 16 and r["scale_1.0"]["median_centroid_error_px"] <= 1.3
