"""segment_chain on a tiny Wan2.2-TI2V-format model: segment 0 from text, every next segment from
image-to-video with the last frame of the one before as its image condition."""
import json
import shutil

import pytest
import torch

from vidlab.backends import load_backend
from vidlab.config import GenerationRequest
from vidlab.strategies import STRATEGIES, RetrySegment
from vidlab.strategies.image_fields import to_uint8

PROMPT = "a red circle in the center on a white background"


def build_tiny_ti2v(tiny_wan: str, root) -> str:
    """conftest's tiny Wan, saved as Wan2.2-TI2V-5B ships: `expand_timesteps` on, so the image's latent
    replaces the first latent frame and text-to-video and image-to-video share one transformer."""
    folder = root / "ti2v"
    shutil.copytree(tiny_wan, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "expand_timesteps": True}))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_ti2v(tiny_wan, tmp_path_factory):
    return build_tiny_ti2v(tiny_wan, tmp_path_factory.mktemp("tiny_ti2v"))


@pytest.fixture
def backend(tiny_ti2v):
    return load_backend("wan2.2-ti2v-5b", base=tiny_ti2v)


def request(**kw):
    base = dict(prompt=PROMPT, duration=0.8, fps=15, resolution="32x32", num_inference_steps=2, seed=5)
    return GenerationRequest(**{**base, **kw})  # 12 frames


def record_image_conditions(backend, monkeypatch) -> list[torch.Tensor]:
    """The image each image-to-video call conditions on, as the pipeline hands it to prepare_latents."""
    pipe, images = backend.pipeline("wan_i2v"), []
    original = pipe.prepare_latents

    def recording(image, *args, **kwargs):
        images.append(image.detach().clone())
        return original(image, *args, **kwargs)

    monkeypatch.setattr(pipe, "prepare_latents", recording)
    return images


def test_last_frame_of_each_segment_conditions_the_next(backend, monkeypatch):
    images = record_image_conditions(backend, monkeypatch)
    segments = []
    frames, rec = STRATEGIES["segment_chain"](backend, request(), {"num_segments": 3},
                                              lambda info: segments.append(info.preview))
    # 12 frames as 3 segments of 4: Wan makes 4k + 1 frames, so each segment is asked for 5 and keeps 4
    assert frames.shape == (12, 3, 32, 32) and rec["segment_starts"] == [0, 4, 8]
    assert [s.shape[0] for s in segments] == [4, 4, 4]
    assert len(images) == 2                                        # segment 0 is text-to-video
    for k, image in enumerate(images):
        anchor = frames[rec["segment_starts"][k + 1] - 1]             # last frame of segment k
        expected = torch.from_numpy(to_uint8(anchor)).permute(2, 0, 1).float() / 127.5 - 1
        assert image.shape == (1, 3, 32, 32)
        assert torch.allclose(image[0], expected, atol=1e-6)
    assert rec["anchor_strength"] is None                           # i2v has no strength: not pretended
    again, rec_again = STRATEGIES["segment_chain"](backend, request(), {"num_segments": 3})
    assert torch.equal(frames, again) and rec == rec_again


def test_a_retried_segment_keeps_its_anchor(backend, monkeypatch):
    images = record_image_conditions(backend, monkeypatch)
    attempts = []

    def reject_first_try_of_segment_1(info):
        attempts.append(info.preview)
        if info.index == 1 and info.attempt == 0:
            raise RetrySegment("test rejects it")

    frames, rec = STRATEGIES["segment_chain"](backend, request(duration=0.67), {"num_segments": 2, "color_coherence": 0},
                                              reject_first_try_of_segment_1)
    assert frames.shape[0] == 10 and rec["segments"][1]["attempt_seeds"][0] != rec["segments"][1]["seed"]
    first_try, second_try = attempts[1], attempts[2]
    assert torch.equal(images[0], images[1])                        # both attempts conditioned on one anchor
    # the anchor's latent is the first latent frame and Wan's VAE is causal in time: frame 0 is the
    # anchor's, whatever the seed; the frames after it come from the new seed
    assert torch.equal(first_try[0], second_try[0])
    assert not torch.equal(first_try[1:], second_try[1:])
    assert torch.equal(frames[5:], second_try)


def test_loader_carries_expand_timesteps(tiny_ti2v):
    """Wan2.2-TI2V's image-to-video needs the model_index option, or it gets 2x+4 latent channels."""
    backend = load_backend("wan2.2-ti2v-5b", base=tiny_ti2v)
    assert backend.pipeline("wan_i2v").config.expand_timesteps and backend.pipeline("wan").config.expand_timesteps
