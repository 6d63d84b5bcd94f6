"""Strategies on tiny real-format components: determinism, frame counts, replay, transitions, retries."""
import pytest
import torch

import vidlab
from vidlab.seeds import sub_seed
from vidlab.backends import load_backend
from vidlab.config import GenerationRequest
from vidlab.strategies import STRATEGIES, RetrySegment
from vidlab.strategies import image_fields
from vidlab.strategies.sliding_window import blend_windows, window_starts
from vidlab.strategies.segment_chain import segment_lengths
from vidlab.world import Scene, analyze, render

PROMPT = "a red circle in the center on a white background"


def request(**kw):
    base = dict(prompt=PROMPT, duration=0.4, fps=15, resolution="32x32", num_inference_steps=4, seed=5)
    return GenerationRequest(**{**base, **kw})


@pytest.fixture(scope="module")
def sd(tiny_sd):
    return dict(model="sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])


def run(sd, strategy, req, **options):
    backend = load_backend(sd["model"], base=sd["base"], controlnet=sd["controlnet"])
    return STRATEGIES[strategy](backend, req, options)


def test_registry_is_a_plain_dict_of_functions():
    assert set(STRATEGIES) == {"frame_chain", "segment_chain", "native", "sliding_window"}
    assert all(callable(f) for f in STRATEGIES.values())


@pytest.mark.parametrize("mode", ["controlnet", "controlnet_img2img"])
def test_frame_chain_deterministic_counts_and_seeds(sd, mode):
    req = request()
    a, rec = run(sd, "frame_chain", req, mode=mode)
    b, _ = run(sd, "frame_chain", req, mode=mode)
    assert a.shape == (req.num_frames, 3, 32, 32) == (6, 3, 32, 32)
    assert torch.equal(a, b)
    assert rec["per_frame_seeds"] == [sub_seed(5, "frame", i) for i in range(6)]  # seed 5's own, see vidlab.seeds
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_frame_chain_modes_and_scale_change_frames(sd):
    req = request()
    plain, _ = run(sd, "frame_chain", req, controlnet_conditioning_scale=0.0)
    strong, _ = run(sd, "frame_chain", req, controlnet_conditioning_scale=1.5)
    assert torch.equal(plain[0], strong[0])          # frame 0 is text-to-image in both
    change = (plain[1:] - strong[1:]).abs().mean(dim=(1, 2, 3))
    assert (change > 0.005).all(), change  # every chained frame, not a rounding difference


def test_frame_chain_bad_option_is_named(sd):
    with pytest.raises(Exception, match="controlnet_conditioning_scale"):
        run(sd, "frame_chain", request(), controlnet_conditioning_scale=9)
    with pytest.raises(Exception, match="control_type='depthx'"):
        run(sd, "frame_chain", request(), control_type="depthx")


def test_generate_record_replays_to_identical_frames(sd, tmp_path):
    from vidlab.generate import replay
    backend = load_backend(sd["model"], base=sd["base"], controlnet=sd["controlnet"])
    video = vidlab.generate(request(color_palette="warm"), strategy="frame_chain", model=backend)
    again = replay(video.record)
    assert torch.equal(video.frames, again.frames)
    mp4 = video.save(tmp_path / "v.mp4")
    import json
    manifest = json.loads(mp4.with_suffix(".json").read_text())
    assert manifest["request"] == video.record["request"] and manifest["request"]["color_palette"] == "warm"
    assert (manifest["strategy"], manifest["options"]) == ("frame_chain", {})
    assert manifest["strategy_record"]["per_frame_prompts"] == [PROMPT] * 6
    assert manifest["backend"]["controlnet"] == sd["controlnet"] and manifest["num_frames"] == 6
    assert manifest["strategy_record"]["per_frame_seeds"] == [sub_seed(5, "frame", i) for i in range(6)]
    assert manifest["backend"]["weights_hash"] and manifest["timing"]["peak_memory_bytes"] > 0
    assert "torch" in manifest["versions"] and "diffusers" in manifest["versions"]


def test_segment_chain_crossfade_weights_exact(sd):
    req = request(duration=1.0)  # 15 frames: 2 segments + 2 crossfade frames
    frames, rec = run(sd, "segment_chain", req, num_segments=2, transition="crossfade")
    assert frames.shape[0] == 15 and rec["segment_starts"] == [0, 9]
    a, b = frames[6], frames[9]  # last of segment 0, first of segment 1
    assert torch.allclose(frames[7], 0.7 * a + 0.3 * b, atol=1e-6)
    assert torch.allclose(frames[8], 0.4 * a + 0.6 * b, atol=1e-6)
    again, _ = run(sd, "segment_chain", req, num_segments=2, transition="crossfade")
    assert torch.equal(frames, again)


def test_segment_chain_prompts_suffix_and_retry(sd):
    req = request(duration=0.6)
    calls = []

    def reject_first_try_of_segment_1(info):
        calls.append((info.index, info.attempt))
        if info.index == 1 and info.attempt == 0:
            raise RetrySegment("test rejects it")

    backend = load_backend(sd["model"], base=sd["base"], controlnet=sd["controlnet"])
    frames, rec = STRATEGIES["segment_chain"](backend, req, {"segment_prompts": ["a", "b", "c"]},
                                              reject_first_try_of_segment_1)
    assert calls == [(0, 0), (1, 0), (1, 1), (2, 0)]          # only segment 1 was redone
    seeds = [s["attempt_seeds"] for s in rec["segments"]]
    assert [len(s) for s in seeds] == [1, 2, 1] and rec["segments"][1]["seed"] == seeds[1][1] != seeds[1][0]
    assert [s["prompt"] for s in rec["segments"]] == ["a", "b , same subject , same lighting",
                                                      "c , same subject , same lighting"]
    frames_off, rec_off = run(sd, "segment_chain", req, segment_prompts=["a", "b"], consistency_suffix="")
    assert rec_off["segments"][1]["prompt"] == "b"


def test_segment_prompts_from_keyframes(sd):
    req = request(duration=1.0, keyframes=[{"time": 0.5, "prompt": "a blue square"}])
    _, rec = run(sd, "segment_chain", req)
    assert [s["prompt"] for s in rec["segments"]] == [PROMPT, "a blue square , same subject , same lighting"]


def test_segment_lengths_fill_the_request():
    assert segment_lengths(15, 2, 2) == [7, 6]
    assert sum(segment_lengths(61, 8, 2)) + 2 * 7 == 61
    with pytest.raises(ValueError, match="cannot hold 8 segments"):
        segment_lengths(10, 8, 2)


def test_native_and_sliding_window_on_tiny_animatediff(tiny_sd):
    backend = load_backend("animatediff", base=tiny_sd["base"], motion_adapter=tiny_sd["motion_adapter"])
    req = request(duration=0.55, num_inference_steps=4)  # 8 frames
    a, _ = STRATEGIES["native"](backend, req, {})
    b, _ = STRATEGIES["native"](backend, req, {})
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    long_req = request(duration=0.8, num_inference_steps=4)  # 12 frames
    frames, rec = STRATEGIES["sliding_window"](backend, long_req, {"window": 8, "overlap": 4})
    assert frames.shape[0] == 12 and rec["window_starts"] == [0, 4]
    fn, rec_fn = STRATEGIES["sliding_window"](backend, long_req, {"window": 8, "free_noise": True})
    assert fn.shape[0] == 12 and rec_fn["free_noise"]
    # a video no longer than the overlap is one window (the default overlap 4 used to be an error here)
    short, rec_short = STRATEGIES["sliding_window"](backend, request(duration=0.2, num_inference_steps=4), {})
    assert short.shape[0] == 3 and rec_short["window_starts"] == [0]


def test_window_blend_is_a_partition_of_unity():
    starts = window_starts(12, 8, 4)
    ones = [torch.ones(8, 3, 2, 2) * (i + 1) for i in range(len(starts))]
    out = blend_windows(ones, starts, 12)
    assert torch.allclose(out[:4], torch.ones(4, 3, 2, 2)) and torch.allclose(out[8:], 2 * torch.ones(4, 3, 2, 2))
    assert torch.all((out[4:8] > 1) & (out[4:8] < 2))


# ---- request fields -> effects, measured with the analyzer on ground-truth frames ---------------

def test_pan_moves_the_subject_left_and_zoom_grows_it():
    frame = render(Scene("square", "blue", "white", "center", "medium"))
    x0 = analyze(frame).centroid[0]
    pan = image_fields.warp(frame, image_fields.camera_matrix("pan", 1.0, 64, 64))
    assert analyze(pan).centroid[0] == pytest.approx(x0 - image_fields.PAN_PX_PER_FRAME, abs=0.3)
    strong = image_fields.warp(frame, image_fields.camera_matrix("pan", 1.5, 64, 64))
    assert analyze(strong).centroid[0] < analyze(pan).centroid[0]          # motion_intensity scales the warp
    zoom = frame
    for _ in range(5):  # five frames of zoom: the subject grows by (1 + ZOOM_PER_FRAME)^5
        zoom = image_fields.warp(zoom, image_fields.camera_matrix("zoom", 1.0, 64, 64))
    growth = (analyze(zoom).area / analyze(frame).area) ** 0.5
    assert growth == pytest.approx((1 + image_fields.ZOOM_PER_FRAME) ** 5, abs=0.08)


def test_color_grade_is_identical_for_every_frame():
    frames = torch.rand(1, 3, 8, 8).repeat(4, 1, 1, 1)
    graded = image_fields.color_grade(frames, "warm")
    assert all(torch.equal(graded[0], g) for g in graded)
    assert graded[:, 0].mean() > frames[:, 0].mean() and graded[:, 2].mean() < frames[:, 2].mean()
    assert torch.equal(image_fields.color_grade(frames, "neutral"), frames)


def test_temporal_consistency_mapping_endpoints():
    assert image_fields.consistency_knobs(0.7) == {"controlnet_conditioning_scale": 0.8, "strength": 0.7,
                                              "color_coherence": 0.0}
    assert image_fields.consistency_knobs(1.0) == {"controlnet_conditioning_scale": 1.5, "strength": 0.25,
                                              "color_coherence": 1.0}


def test_lab_histogram_matching_pulls_colours_to_the_reference():
    ref = render(Scene("circle", "red", "white", "center", "large"))
    shifted = (ref * 0.8).clamp(0, 1)
    matched = image_fields.match_lab_histogram(shifted, ref, 1.0)
    assert (matched - ref).abs().mean() < 0.3 * (shifted - ref).abs().mean()


def test_flow_interpolation_places_the_subject_between():
    from vidlab.world import render_clip
    clip = render_clip(Scene("circle", "red", "white", "left", "large"), 4, "right", "slowly")  # 12 px apart
    a, b = clip[0], clip[3]
    mid = image_fields.flow_interpolate(a, b, times=(0.5,))[0]
    xa, xb, xm = (analyze(f).centroid[0] for f in (a, b, mid))
    assert xa < xm < xb and abs(xm - (xa + xb) / 2) < 3


def test_crossfade_rejects_weights_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        image_fields.crossfade(torch.zeros(3, 4, 4), torch.ones(3, 4, 4), ((0.5, 0.6),))


def test_wan_preset_native_and_segment_chain_on_tiny_components(tiny_wan):
    backend = load_backend("wan2.2-ti2v-5b", base=tiny_wan)
    assert backend.preset.family == "wan" and backend.kinds == ["wan", "wan_i2v"]
    req = request(duration=0.34, num_inference_steps=2)  # 5 frames (Wan makes 4k + 1)
    a, _ = STRATEGIES["native"](backend, req, {})
    b, _ = STRATEGIES["native"](backend, req, {})
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    # a count Wan cannot make (not 4k + 1) is asked as the next one and trimmed: 8 -> 9 -> 8
    eight, _ = STRATEGIES["native"](backend, request(duration=0.5, num_inference_steps=2), {})
    nine, _ = STRATEGIES["native"](backend, request(duration=0.6, num_inference_steps=2), {})
    assert eight.shape == (8, 3, 32, 32) and nine.shape == (9, 3, 32, 32)
    torch.testing.assert_close(eight, nine[:8], rtol=0, atol=0)  # the same 9-frame call, trimmed


def test_direct_attention_equals_diffusers_processors_and_spares_other_processors(sd):
    """sd_loop calls plain attention directly (text K/V once, equal CFG halves once): the same numbers
    as diffusers' AttnProcessor2_0; a layer with any other processor (a capture, say) keeps it."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from vidlab.strategies.sd_loop import PromptCache, denoise, latent_shape, make_noise

    class CountingProcessor(AttnProcessor2_0):
        calls = 0

        def __call__(self, *args, **kwargs):
            CountingProcessor.calls += 1
            return super().__call__(*args, **kwargs)

    backend = load_backend(sd["model"], base=sd["base"], controlnet=sd["controlnet"])
    cond, uncond = PromptCache(backend)(PROMPT)
    noise = make_noise(3, latent_shape(backend, 32, 32), backend.device)
    control = image_fields.canny_control(render(Scene("circle", "red", "white", "center", "large"), 32))[None]
    run = lambda: denoise(backend, cond, uncond, noise, num_inference_steps=4, guidance_scale=5.0,  # noqa: E731
                          control=control, control_scale=1.0)
    direct = run()
    models = [backend.components["unet"], backend.components["controlnet"]]
    assert not any("forward" in vars(m) for model in models for m in model.modules())  # restored after the loop
    originals = [dict(m.attn_processors) for m in models]
    try:
        for m in models:
            m.set_attn_processor(CountingProcessor())
        through_diffusers = run()
    finally:
        for m, processors in zip(models, originals):
            m.set_attn_processor(processors)
    assert CountingProcessor.calls > 0
    assert torch.allclose(direct, through_diffusers, atol=1e-6)


def test_segment_boundaries_fall_where_the_keyframes_say(sd):
    # 15 frames at 15 fps; keyframes at 0.2 s (frame 3) and 0.6 s (frame 9): segments of 3, 6, 6 frames
    req = request(duration=1.0, keyframes=[{"time": 0.2, "prompt": "a blue square"},
                                           {"time": 0.6, "prompt": "a green circle"}])
    frames, rec = run(sd, "segment_chain", req)
    assert frames.shape[0] == 15
    assert rec["segment_starts"] == [0, 3, 9] and [s["frames"] for s in rec["segments"]] == [3, 6, 6]
    # with a 2-frame crossfade the transition frames come out of the segment before, starts unchanged
    _, rec = run(sd, "segment_chain", req, transition="crossfade")
    assert [s["frames"] for s in rec["segments"]] == [1, 4, 6]
    # a keyframe at 0 s: no base-prompt segment; keyframes on the same frame are refused, naming them
    _, rec = run(sd, "segment_chain", request(duration=1.0, keyframes=[{"time": 0.0, "prompt": "a blue square"},
                                                                        {"time": 0.5, "prompt": "a green circle"}]))
    assert [s["frames"] for s in rec["segments"]] == [8, 7]
    with pytest.raises(ValueError, match=r"keyframes\[1\].time=0.25 falls on frame 4"):
        run(sd, "segment_chain", request(duration=1.0, keyframes=[{"time": 0.21, "prompt": "a blue square"},
                                                                  {"time": 0.25, "prompt": "a green circle"}]))
