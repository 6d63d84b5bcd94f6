"""The native video path: every pipeline on the backend's device and dtype (bf16 on the CPU too),
every strategy generating at bf16, and the native strategies honouring or refusing each field."""
import pytest
import torch

from vidlab.backends import load_backend
from vidlab.config import GenerationRequest
from vidlab.strategies import STRATEGIES
from vidlab.strategies.video_fields import FieldNotSupportedError, NoisePrior, shared_noise_share

PROMPT = "a red circle moves left on a white background"
SLOW = "a red circle moves left slowly on a white background"
QUICK = "a red circle moves left quickly on a white background"


def request(**kw):
    base = dict(prompt=PROMPT, duration=0.55, fps=15, resolution="32x32", num_inference_steps=4, seed=5)
    return GenerationRequest(**{**base, **kw})  # 8 frames


def misplaced_tensors(pipe, device, dtype) -> list[str]:
    """Names of every parameter and buffer of every pipeline component not on device with dtype."""
    bad = []
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        for t_name, t in [*module.named_parameters(), *module.named_buffers()]:
            if t.device.type != torch.device(device).type or (t.is_floating_point() and t.dtype != dtype):
                bad.append(f"{name}.{t_name}: {t.device} {t.dtype}")
    return bad


@pytest.fixture(scope="module")
def tiny_video_unet(tiny_sd, tmp_path_factory):
    """A whole UNetMotionModel folder (the zoo's video model format) built from the tiny UNet + adapter."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd["base"], subfolder="unet")
    video = UNetMotionModel.from_unet2d(unet, MotionAdapter.from_pretrained(tiny_sd["motion_adapter"]))
    folder = tmp_path_factory.mktemp("video_unet") / "video_unet"
    video.save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_sd_and_animatediff_pipeline_sits_on_the_backend_device_and_dtype(tiny_sd, tiny_video_unet, dtype):
    adapter = load_backend("animatediff", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"],
                           motion_adapter=tiny_sd["motion_adapter"], dtype=dtype)
    whole = load_backend(tiny_sd["base"], controlnet=tiny_sd["controlnet"], video_unet=tiny_video_unet, dtype=dtype)
    for backend in (adapter, whole):
        assert set(backend.kinds) >= {"text2img", "img2img", "controlnet", "controlnet_img2img", "animatediff",
                                      "animatediff_v2v", "animatediff_controlnet"}
        for kind in backend.kinds:
            pipe = backend.pipeline(kind)
            assert misplaced_tensors(pipe, backend.device, backend.dtype) == [], kind
    # the video UNet the pipeline built from the adapter is a module of its own, moved with the rest
    assert adapter.pipeline("animatediff").unet is not adapter.components["unet"]
    assert whole.pipeline("animatediff").unet is whole.components["video_unet"]


def test_wan_pipelines_sit_on_the_backend_device_and_dtype(tiny_wan):
    backend = load_backend("wan2.2-ti2v-5b", base=tiny_wan, dtype=torch.bfloat16)
    for kind in backend.kinds:
        assert misplaced_tensors(backend.pipeline(kind), backend.device, backend.dtype) == [], kind


@pytest.mark.parametrize("strategy,options", [
    ("frame_chain", {}), ("segment_chain", {"num_segments": 2}), ("native", {}),
    ("sliding_window", {"window": 4, "overlap": 2}), ("sliding_window", {"window": 4, "free_noise": True})])
def test_every_strategy_generates_at_bf16_on_the_cpu(tiny_sd, strategy, options):
    backend = load_backend("animatediff", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"],
                           motion_adapter=tiny_sd["motion_adapter"], dtype="bf16")
    frames, _ = STRATEGIES[strategy](backend, request(num_inference_steps=4), options)
    assert frames.shape == (8, 3, 32, 32) and frames.dtype == torch.float32
    assert torch.isfinite(frames).all() and frames.std() > 0


@pytest.fixture(scope="module")
def video(tiny_sd):
    return load_backend("animatediff", base=tiny_sd["base"], motion_adapter=tiny_sd["motion_adapter"])


def prompts_seen(backend, monkeypatch) -> list:
    """The prompt of every video pipeline call: its `prompt` argument, or, where vidlab hands it
    the prompt's embedding (`prompt_embeds`), the last prompt vidlab encoded for it."""
    seen, encoded = [], []
    for kind in ("animatediff", "animatediff_v2v"):
        pipe = backend.pipeline(kind)
        original, encode = type(pipe).__call__, type(pipe).encode_prompt

        def recording(self, *args, _original=original, **kwargs):
            seen.append(kwargs["prompt"] if kwargs.get("prompt") is not None else encoded[-1])
            return _original(self, *args, **kwargs)

        def encoding(self, prompt, *args, _encode=encode, **kwargs):
            if prompt is not None:
                encoded.append(prompt)
            return _encode(self, prompt, *args, **kwargs)

        monkeypatch.setattr(type(pipe), "__call__", recording)
        monkeypatch.setattr(type(pipe), "encode_prompt", encoding)
    return seen


def test_an_anchored_clip_without_a_denoising_step_is_refused(video):
    # 2 steps x strength 0.416 (temporal_consistency 0.85, motion_intensity 0.5) is no step: diffusers
    # fails on an empty video
    with pytest.raises(ValueError, match=r"num_inference_steps=2 x strength=0.41\d* leaves no denoising step"):
        STRATEGIES["segment_chain"](video, request(num_inference_steps=2), {"num_segments": 2})


def test_native_keyframes_give_each_frame_its_prompt(video, monkeypatch):
    seen = prompts_seen(video, monkeypatch)
    req = request(keyframes=[{"time": 0.3, "prompt": "a blue square moves up on a white background"}])
    frames, rec = STRATEGIES["native"](video, req, {})
    # keyframe at 0.3 s = frame 5 (of 8 at 15 fps, frame i at i/15 s)
    assert rec["prompts_by_frame"] == {0: SLOW, 5: "a blue square moves up slowly on a white background"}
    assert seen == [{0: SLOW, 4: SLOW,
                     5: "a blue square moves up slowly on a white background"}]
    plain, _ = STRATEGIES["native"](video, request(), {})
    assert not torch.equal(frames[5:], plain[5:])


def test_native_refuses_keyframes_on_wan(tiny_wan):
    backend = load_backend("wan2.2-ti2v-5b", base=tiny_wan)
    req = request(keyframes=[{"time": 0.3, "prompt": "a blue square"}])
    with pytest.raises(FieldNotSupportedError, match=r"^keyframes=.*sliding_window or segment_chain"):
        STRATEGIES["native"](backend, req, {})


def test_sliding_window_gives_each_window_the_prompt_at_its_first_new_frame(video, monkeypatch):
    seen = prompts_seen(video, monkeypatch)
    req = request(duration=0.8, keyframes=[{"time": 0.4, "prompt": "a blue square moves up"}])  # 12 frames, key at 6
    _, rec = STRATEGIES["sliding_window"](video, req, {"window": 6, "overlap": 2})
    assert rec["window_starts"] == [0, 4, 6]
    # windows' first new frames: 0, 6, 10 -> base, keyframe, keyframe
    assert rec["window_prompts"] == [SLOW, "a blue square moves up slowly",
                                     "a blue square moves up slowly"]
    assert seen == rec["window_prompts"]


def test_camera_motion_is_a_caption_or_refused(video, monkeypatch):
    seen = prompts_seen(video, monkeypatch)
    _, rec = STRATEGIES["native"](video, request(camera_motion="pan"), {})
    assert seen[-1] == rec["prompt"] == f"{SLOW} , the camera pans right"
    # the zoo's word-level tokenizer has no 'zooms': refused, naming the field and the word
    with pytest.raises(FieldNotSupportedError, match=r"^camera_motion='zoom'.*\['zooms'\]"):
        STRATEGIES["native"](video, request(camera_motion="zoom"), {})
    with pytest.raises(FieldNotSupportedError, match=r"^camera_motion='zoom'"):
        STRATEGIES["sliding_window"](video, request(camera_motion="zoom"), {"window": 4})


def test_motion_intensity_is_the_speed_word_or_refused(video, monkeypatch):
    seen = prompts_seen(video, monkeypatch)
    STRATEGIES["native"](video, request(motion_intensity=1.2), {})
    STRATEGIES["native"](video, request(motion_intensity=0.3), {})
    assert seen == [QUICK, SLOW]
    fast, _ = STRATEGIES["native"](video, request(motion_intensity=1.2), {})
    slow, _ = STRATEGIES["native"](video, request(motion_intensity=0.3), {})
    assert not torch.equal(fast, slow)
    with pytest.raises(FieldNotSupportedError, match=r"^motion_intensity=1.2: the prompt .* names no motion"):
        STRATEGIES["native"](video, request(prompt="a red circle on a white background", motion_intensity=1.2), {})
    with pytest.raises(FieldNotSupportedError, match=r"^motion_intensity=1.2: asks for 'quickly'.*says 'slowly'"):
        STRATEGIES["native"](video, request(prompt=SLOW, motion_intensity=1.2), {})
    # left unset, a prompt without motion is fine and unchanged
    _, rec = STRATEGIES["native"](video, request(prompt="a red circle on a white background"), {})
    assert rec["prompt"] == "a red circle on a white background"


def test_temporal_consistency_is_the_shared_share_of_the_initial_noise(video):
    assert shared_noise_share(0.7) == 0.0 and shared_noise_share(1.0) == 0.3
    pipe = video.pipeline("animatediff")
    z = NoisePrior(0.3).latents(pipe, "sd", 64, 32, 32, seed=1)  # (1, C, 64 frames, 4, 4)
    assert NoisePrior(0.0).latents(pipe, "sd", 8, 32, 32, seed=1) is None
    frames = z[0].permute(1, 0, 2, 3).flatten(1)  # (F, C*h*w)
    corr = torch.corrcoef(frames)[~torch.eye(64, dtype=bool)].mean()
    assert abs(float(z.var()) - 1) < 0.05 and abs(float(corr) - 0.3) < 0.05
    loose, rec_loose = STRATEGIES["native"](video, request(temporal_consistency=0.7), {})
    tight, rec_tight = STRATEGIES["native"](video, request(temporal_consistency=1.0), {})
    assert (rec_loose["shared_noise_share"], rec_tight["shared_noise_share"]) == (0.0, 0.3)
    assert not torch.equal(loose, tight)
    # sliding_window: it also sets how much each window may change its anchor
    _, rec = STRATEGIES["sliding_window"](video, request(duration=0.8, temporal_consistency=1.0), {"window": 6})
    assert rec["strength"] == 0.25


@pytest.mark.parametrize("strategy,options,unit,total", [
    ("frame_chain", {}, "frame", 8), ("segment_chain", {"num_segments": 2}, "segment", 2), ("native", {}, "clip", 1),
    ("sliding_window", {"window": 4, "overlap": 2}, "window", 3),
    ("sliding_window", {"window": 4, "free_noise": True}, "clip", 1)])
def test_every_strategy_sends_the_same_event_to_one_listener(tiny_sd, strategy, options, unit, total):
    from vidlab.strategies.events import StrategyEvent

    backend = load_backend("animatediff", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"],
                           motion_adapter=tiny_sd["motion_adapter"])
    events = []
    frames, _ = STRATEGIES[strategy](backend, request(), options, events.append)
    assert all(isinstance(e, StrategyEvent) and e.strategy == strategy and e.unit == unit for e in events)
    assert [e.index for e in events] == list(range(total)) and {e.total for e in events} == {total}
    assert events[-1].fraction == 1.0
    elapsed = [e.elapsed_s for e in events]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    # the previews are the frames each unit made: together they cover the video
    assert all(e.preview.ndim == 4 and e.preview.shape[1:] == frames.shape[1:] for e in events)
    assert sum(e.preview.shape[0] for e in events) >= frames.shape[0]
    if unit in ("frame", "clip"):
        torch.testing.assert_close(torch.cat([e.preview for e in events]), frames, rtol=0, atol=0)


def test_check_device_runs_every_strategy_at_every_dtype_against_the_cpu(tiny_sd, tmp_path):
    """experiments/check_device.py, the script to run on a GPU, here on the CPU with a tiny model."""
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import check_device

    model = tmp_path / "model"  # one folder with the ControlNet and the motion adapter inside, like the zoo
    shutil.copytree(tiny_sd["base"], model)
    for part in ("controlnet", "motion_adapter"):
        shutil.copytree(tiny_sd[part], model / part)
    rows = check_device.check(str(model), "cpu", ["fp32", "bf16"], list(check_device.OPTIONS), steps=4, frames=8)
    assert [(r["strategy"], r["dtype"]) for r in rows] == [(s, d) for d in ("float32", "bfloat16")
                                                           for s in check_device.OPTIONS]
    assert all("error" not in r and r["finite"] and r["frames"] == 8 and r["seconds"] > 0 for r in rows), rows
    # fp32 on the CPU is the reference itself: identical; bf16 differs, by a bounded amount
    assert all(r["max_diff_vs_cpu"] == 0.0 for r in rows if r["dtype"] == "float32")
    assert all(0 < r["max_diff_vs_cpu"] <= 1 for r in rows if r["dtype"] == "bfloat16")


def test_a_sweep_point_with_every_default_spelled_out_is_not_refused(video):
    """A sweep's point carries every field (defaults included): the default motion_intensity asks nothing."""
    from vidlab.config import parse_request
    spelled_out = parse_request(request(prompt="a red circle on a white background").model_dump(mode="json"))
    assert "motion_intensity" in spelled_out.model_fields_set
    _, rec = STRATEGIES["native"](video, spelled_out, {})
    assert rec["prompt"] == "a red circle on a white background"


def test_a_video_variant_asked_for_first_shares_a_placed_animatediff_pipeline(tiny_sd):
    from vidlab.backends import clear_cache
    clear_cache()
    backend = load_backend("animatediff", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"],
                           motion_adapter=tiny_sd["motion_adapter"], dtype="bf16")
    v2v = backend.pipeline("animatediff_v2v")  # before 'animatediff' itself
    video = backend.pipeline("animatediff")
    assert v2v.unet is video.unet and backend.pipeline("animatediff_controlnet").unet is video.unet
    assert misplaced_tensors(video, backend.device, backend.dtype) == []
