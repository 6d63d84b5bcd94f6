"""The zoo's Wan-style video model (joint spatio-temporal attention), built untrained in the test with
the zoo's own configs and loaded through `WanPipeline.from_pretrained` as the video part of an 'sd'
preset: shapes, frame counts, device/dtype placement, determinism, the anchored windows, and that the
factorized (AnimateDiff) design stays selectable."""
import pytest
import torch

from vidlab.backends import load_backend
from vidlab.backends.presets import PRESETS, resolve
from vidlab.config import GenerationRequest
from vidlab.strategies import STRATEGIES
from vidlab.strategies.native import frames_made, generate_clip, wan_frames_to_ask
from vidlab.training.wan_parts import is_framewise, make_framewise, transformer_config, vae_config

PROMPT = "a red circle moves right slowly on a white background"


def build_zoo_wan(root) -> str:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vidlab.training.wan import build_text_encoder
    from vidlab.training.wan_ladder import make_pipeline
    from vidlab.world.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    vae = AutoencoderKLWan(**vae_config())
    make_framewise(vae)
    pipe = make_pipeline(WanTransformer3DModel(**transformer_config()), tokenizer, build_text_encoder(tokenizer),
                         torch.zeros(4), torch.ones(4), vae)
    pipe.save_pretrained(root / "wan", safe_serialization=True)
    return str(root / "wan")


@pytest.fixture(scope="module")
def zoo_wan(tmp_path_factory):
    return build_zoo_wan(tmp_path_factory.mktemp("zoo_wan"))


@pytest.fixture
def backend(tiny_sd, zoo_wan):
    return load_backend(tiny_sd["base"], wan=zoo_wan)


def request(frames=6, **kw):
    base = dict(prompt=PROMPT, duration=frames / 15, fps=15, resolution="64x64", num_inference_steps=2, seed=3)
    return GenerationRequest(**{**base, **kw})


def test_framewise_vae_keeps_every_frame_and_encodes_each_alone():
    from diffusers import AutoencoderKLWan
    torch.manual_seed(1)
    vae = AutoencoderKLWan(**vae_config()).eval()
    make_framewise(vae)
    assert is_framewise(vae)
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mean
        alone = torch.cat([vae.encode(video[:, :, i:i + 1]).latent_dist.mean for i in range(5)], dim=2)
        out = vae.decode(z).sample
    assert z.shape == (1, 4, 5, 32, 32)                 # no temporal compression, 2x2 pixels a cell
    assert torch.allclose(z, alone, atol=1e-5)          # a frame's latent depends on that frame alone
    assert out.shape == (1, 3, 5, 64, 64)


def test_frames_asked_of_wan_give_exactly_the_frames_wanted(backend):
    pipe = backend.pipeline("wan")
    assert pipe.vae_scale_factor_temporal == 1
    assert (wan_frames_to_ask(pipe, 8), frames_made(pipe, 8)) == (7, 8)   # the pipeline adds one when k = 1
    out = pipe(PROMPT, num_frames=wan_frames_to_ask(pipe, 8), height=64, width=64, num_inference_steps=1,
               output_type="pt", max_sequence_length=24).frames
    assert out.shape[1] == 8


def test_native_on_the_joint_model(backend):
    assert backend.video_design == "joint" and "wan" in backend.kinds
    frames, rec = STRATEGIES["native"](backend, request(), {})
    assert frames.shape == (6, 3, 64, 64) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    again, _ = STRATEGIES["native"](backend, request(), {})
    other, _ = STRATEGIES["native"](backend, request(seed=4), {})
    assert torch.equal(frames, again) and not torch.equal(frames, other)
    assert backend.record()["video_design"] == "joint"


def test_joint_model_placed_on_backends_dtype(tiny_sd, zoo_wan):
    bf16 = load_backend(tiny_sd["base"], wan=zoo_wan, dtype="bf16")
    pipe = bf16.pipeline("wan")
    for name in ("transformer", "vae", "text_encoder"):
        module = getattr(pipe, name)
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}, name
        assert {p.device.type for p in module.parameters()} == {"cpu"}, name
    frames, _ = STRATEGIES["native"](bf16, request(frames=3), {})
    assert frames.shape == (3, 3, 64, 64) and torch.isfinite(frames).all()


def test_an_anchored_clip_starts_from_its_anchor(backend):
    pipe = backend.pipeline("wan")
    anchor = torch.rand(3, 64, 64)
    clip = generate_clip(backend, request(), PROMPT, 5, seed=9, image=anchor)
    with torch.no_grad():   # frame 0 is held to the anchor's latent, so it decodes as the anchor's round trip
        z = pipe.vae.encode((anchor * 2 - 1)[None, :, None]).latent_dist.mean
        round_trip = (pipe.vae.decode(z).sample[0, :, 0] / 2 + 0.5).clamp(0, 1)
    assert clip.shape == (5, 3, 64, 64)
    assert torch.allclose(clip[0], round_trip, atol=1e-4)
    free = generate_clip(backend, request(), PROMPT, 5, seed=9)
    assert not torch.allclose(free[0], round_trip, atol=1e-2)


def test_sliding_window_over_the_joint_model(backend):
    frames, rec = STRATEGIES["sliding_window"](backend, request(frames=10), {"window": 6, "overlap": 2})
    assert frames.shape == (10, 3, 64, 64) and rec["window_starts"] == [0, 4]
    again, _ = STRATEGIES["sliding_window"](backend, request(frames=10), {"window": 6, "overlap": 2})
    assert torch.equal(frames, again)
    with pytest.raises(ValueError, match="free_noise=True needs an AnimateDiff model"):
        STRATEGIES["sliding_window"](backend, request(frames=10), {"window": 6, "free_noise": True})


def test_both_designs_are_selectable(tiny_sd):
    joint, factorized_zoo = resolve("shapes-tiny-joint"), resolve("shapes-tiny")
    assert factorized_zoo.wan is None and joint.video_unet is None and joint.motion_adapter is None
    assert joint.base == factorized_zoo.base and joint.controlnet == factorized_zoo.controlnet  # same image model
    factorized = load_backend(tiny_sd["base"], motion_adapter=tiny_sd["motion_adapter"])
    assert factorized.video_design == "factorized" and "wan" not in factorized.kinds
    image_only = load_backend(tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    assert image_only.video_design is None


def test_joint_attention_capture_gives_frame_by_frame_attention(backend):
    from vidlab.attention.run import generate_with_attention
    run = generate_with_attention(backend, PROMPT, num_frames=4, num_inference_steps=2, height=64, width=64,
                                  kinds=("joint", "cross"))
    assert run.pipeline_kind == "wan" and run.frames.shape == (4, 3, 64, 64)
    matrix = run.capture.frame_attention()
    assert matrix.shape == (4, 4)
    torch.testing.assert_close(matrix.sum(1), torch.ones(4), atol=1e-4, rtol=0)
    maps = run.capture.word_maps()
    assert "circle" in maps and maps["circle"].shape[0] == 4  # one heat map per frame


def test_check_device_covers_the_joint_model(tiny_sd, zoo_wan, tmp_path):
    """experiments/check_device.py on a zoo-like folder whose video model is the joint one (CPU, fp32 and bf16)."""
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import check_device

    model = tmp_path / "model"
    shutil.copytree(tiny_sd["base"], model)
    shutil.copytree(tiny_sd["controlnet"], model / "controlnet")
    shutil.copytree(zoo_wan, model / "wan")
    rows = check_device.check(str(model), "cpu", ["fp32", "bf16"], ["native", "sliding_window"], steps=2, frames=8)
    assert {r["video_design"] for r in rows} == {"joint"} and len(rows) == 4
    assert all("error" not in r and r["finite"] and r["frames"] == 8 for r in rows), rows
    assert all(r["max_diff_vs_cpu"] == 0.0 for r in rows if r["dtype"] == "float32")


HAS_ZOO_WAN = (PRESETS["shapes-tiny-joint"].wan is not None)


@pytest.mark.skipif(not HAS_ZOO_WAN, reason="the zoo's joint video model is not exported yet")
def test_the_zoo_joint_model_loads_offline_through_wan_pipeline(monkeypatch):
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from vidlab.backends import ZOO_PATH
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = WanPipeline.from_pretrained(ZOO_PATH / "wan", use_safetensors=True)
    assert isinstance(pipe.transformer, WanTransformer3DModel) and isinstance(pipe.vae, AutoencoderKLWan)
    assert isinstance(pipe.text_encoder, UMT5EncoderModel) and is_framewise(pipe.vae)
    assert pipe.vae.config.temperal_downsample == [] and pipe.vae_scale_factor_temporal == 1
    backend = load_backend("shapes-tiny-joint")
    assert backend.video_design == "joint" and load_backend("shapes-tiny").video_design == "factorized"
    frames, _ = STRATEGIES["native"](backend, request(frames=8, num_inference_steps=4), {})
    again, _ = STRATEGIES["native"](backend, request(frames=8, num_inference_steps=4), {})
    assert frames.shape == (8, 3, 64, 64) and torch.equal(frames, again)


class _RoundTrip:
    """A stand-in VAE: `decode(encode(x))` is `spoil(x)` (the identity: a perfect round trip)."""

    def __init__(self, spoil=lambda x: x):
        self.spoil = spoil

    def encode(self, x):
        return type("Out", (), {"latent_dist": type("Dist", (), {"mean": x})()})()

    def decode(self, z):
        return type("Out", (), {"sample": self.spoil(z)})()


def test_vae_round_trip_reads_ground_truth_right_and_splits_shape_by_size_and_shape():
    from vidlab.training.wan_ladder import vae_reconstruction
    from vidlab.world.shapes import SHAPES, SIZES

    perfect = vae_reconstruction(_RoundTrip(), n=48)  # the analyzer itself reads every rendered frame right
    assert perfect["n"] == 48 and perfect["shape"] == perfect["color"] == perfect["position"] == 1.0
    assert set(perfect["shape_by_size"]) <= set(SIZES) and set(perfect["shape_by_shape"]) <= set(SHAPES)
    assert set(perfect["shape_by_size"].values()) == set(perfect["shape_by_shape"].values()) == {1.0}
    blurred = vae_reconstruction(_RoundTrip(lambda x: torch.nn.functional.avg_pool3d(
        x, (1, 7, 7), stride=1, padding=(0, 3, 3), count_include_pad=False)), n=48)
    assert blurred["color"] > 0.9 and blurred["shape"] < 0.9  # a blur keeps the colour and rounds the shapes:
    by_shape = blurred["shape_by_shape"]  # circles stay circles, corners are lost, small subjects first
    assert by_shape["circle"] == 1.0 and max(v for k, v in by_shape.items() if k != "circle") < 1.0
    assert blurred["shape_by_size"]["small"] < blurred["shape_by_size"]["large"]
