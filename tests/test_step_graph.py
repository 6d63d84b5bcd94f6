"""Denoising steps replayed from recorded graphs (strategies/step_graph.py) give eager's bits, and
only where the trace can have seen everything the step does."""
import gc
import weakref

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from vidlab.backends import clear_cache, load_backend
from vidlab.strategies import image_fields, step_graph
from vidlab.strategies.sd_loop import PromptCache, denoise, encode_image, latent_shape, make_noise
from vidlab.world import Scene, render

PROMPT = "a red circle in the center"


@pytest.fixture(autouse=True)
def fresh_graphs():
    step_graph.clear()
    yield
    step_graph.clear()


@pytest.fixture()
def backend(tiny_sd):
    return load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])


def inputs(backend, seeds=(3,), negative=""):
    cond, uncond = PromptCache(backend)(PROMPT, negative)
    noise = torch.cat([make_noise(s, latent_shape(backend, 32, 32), backend.device) for s in seeds])
    image = render(Scene("circle", "red", "white", "center", "large"), 32)
    control = image_fields.canny_control(image)[None].expand(len(seeds), -1, -1, -1)
    return cond, uncond, noise, control, image


CASES = {
    "text": lambda b, c, u, n, ctl, img: denoise(b, c, u, n, num_inference_steps=4, guidance_scale=5.0),
    "control": lambda b, c, u, n, ctl, img: denoise(b, c, u, n, num_inference_steps=4, guidance_scale=5.0,
                                                    control=ctl, control_scale=0.7),
    "control_img2img": lambda b, c, u, n, ctl, img: denoise(
        b, c, u, n, num_inference_steps=6, guidance_scale=5.0, control=ctl, control_scale=1.0, strength=0.7,
        init_latents=encode_image(b, img[None].expand(len(n), -1, -1, -1))),
    "no_cfg": lambda b, c, u, n, ctl, img: denoise(b, c, u, n, num_inference_steps=4, guidance_scale=1.0,
                                                   control=ctl),
}


def eager(monkeypatch, run):
    with monkeypatch.context() as m:
        m.setenv("VIDLAB_STEP_GRAPHS", "0")
        return run()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seeds", [(3,), (3, 8, 21)], ids=["one_seed", "three_seeds"])
def test_replayed_steps_give_eager_bits(backend, monkeypatch, case, seeds):
    args = inputs(backend, seeds)
    run = lambda: CASES[case](backend, *args)  # noqa: E731
    reference = eager(monkeypatch, run)
    assert step_graph.graph_stats()["graphs"] == 0
    first, second = run(), run()  # the first records and checks a graph, the second replays every step
    stats = step_graph.graph_stats()
    assert stats["graphs"] == stats["verified"] == 1 and stats["unusable"] == 0
    assert stats["replays"] >= 4 - 2  # step 0 records, step 1 checks: the others come from the graph
    assert torch.equal(first, reference) and torch.equal(second, reference)


def test_what_a_trace_cannot_see_keeps_its_own_graph(backend, monkeypatch):
    """Which layers compute one CFG half for both depends on the data (equal texts, equal seeds):
    each such pattern gets its own graph, and none is replayed for another."""
    same_text, other_text = inputs(backend, negative=PROMPT), inputs(backend)
    twins, pair = inputs(backend, seeds=(5, 5)), inputs(backend, seeds=(5, 6))
    runs = [lambda: CASES["control"](backend, *same_text), lambda: CASES["control"](backend, *other_text),
            lambda: CASES["no_cfg"](backend, *twins), lambda: CASES["no_cfg"](backend, *pair)]
    references = [eager(monkeypatch, run) for run in runs]
    for _ in range(2):
        for run, reference in zip(runs, references):
            assert torch.equal(run(), reference)
    assert step_graph.graph_stats()["graphs"] == 4


def test_attention_capture_and_hooks_run_eager(backend):
    """A step whose Python does more than compute (a capture processor, a forward hook) is not traced:
    the processor and the hook see every step."""
    class CountingProcessor(AttnProcessor2_0):
        calls = 0

        def __call__(self, *args, **kwargs):
            CountingProcessor.calls += 1
            return super().__call__(*args, **kwargs)

    unet = backend.components["unet"]
    args = inputs(backend)
    originals = dict(unet.attn_processors)
    layers = len(originals)  # (set_attn_processor empties the dict it is given)
    unet.set_attn_processor(CountingProcessor())
    try:
        for _ in range(2):
            CASES["text"](backend, *args)
    finally:
        unet.set_attn_processor(originals)
    assert CountingProcessor.calls == 2 * 4 * layers
    calls = []
    handle = unet.conv_out.register_forward_hook(lambda *a: calls.append(1))
    try:
        for _ in range(2):
            CASES["text"](backend, *args)
    finally:
        handle.remove()
    assert len(calls) == 2 * 4 and step_graph.graph_stats()["graphs"] == 0


def test_a_graph_that_misses_eager_bits_is_dropped_with_a_warning(backend, monkeypatch):
    args = inputs(backend)
    reference = eager(monkeypatch, lambda: CASES["control"](backend, *args))
    real_call = step_graph._Graph.__call__
    monkeypatch.setattr(step_graph._Graph, "__call__", lambda self, *x: real_call(self, *x) + 1e-7)
    with pytest.warns(RuntimeWarning, match="did not replay eager's bits"):
        assert torch.equal(CASES["control"](backend, *args), reference)
    assert torch.equal(CASES["control"](backend, *args), reference)  # that key runs eager from now on
    assert step_graph.graph_stats() == {"graphs": 0, "verified": 0, "unusable": 1, "replays": 0}


def test_graphs_follow_the_weights(backend, monkeypatch):
    args = inputs(backend)
    run = lambda: CASES["text"](backend, *args)  # noqa: E731
    run(), run()
    weight = backend.components["unet"].conv_out.weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(0.5)                       # in place: the graph holds this very tensor
        assert torch.equal(run(), eager(monkeypatch, run))
        weight.data = original.clone() * 0.25      # new storage: a new key, a new graph
        assert torch.equal(run(), eager(monkeypatch, run))
        assert step_graph.graph_stats()["graphs"] == 2
    finally:
        weight.data = original


def test_graphs_do_not_keep_models_alive(tiny_sd):
    clear_cache()
    backend = load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    args = inputs(backend)
    CASES["control"](backend, *args)
    assert step_graph.graph_stats()["graphs"] == 1
    unet = weakref.ref(backend.components["unet"])
    del backend, args
    clear_cache()
    gc.collect()
    assert unet() is None and step_graph.graph_stats()["graphs"] == 0
