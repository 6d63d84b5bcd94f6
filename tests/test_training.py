"""Each training recipe of the zoo runs a few steps on a small batch, its loss falls, and it resumes."""
import json

import pytest
import torch

from vidlab.training import common
from vidlab.training import from_scratch as tr


def _fit(stage: common.Stage, steps: int, lr: float) -> tuple[float, float]:
    """Loss of the fixed step-0 batch before and after `steps` plain optimizer steps."""
    for g in stage.optimizer.param_groups:
        g["lr"] = lr
    with torch.no_grad():
        before = float(stage.loss_fn(0))
    for step in range(steps):
        stage.optimizer.zero_grad()
        stage.loss_fn(step % 2).backward()
        stage.optimizer.step()
    with torch.no_grad():
        after = float(stage.loss_fn(0))
    return before, after


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with two steps of every stage the later stages read."""
    d = tmp_path_factory.mktemp("zoo_run")
    tr.train_text(d, steps=2, batch=8)
    tr.train_vae(d, steps=2, batch=4)
    tr.cache_latents(d, n=32, batch=16)
    tr.train_unet(d, steps=2, batch=4)
    return d


def test_text_loss_falls(run_dir):
    before, after = _fit(tr.text_stage(run_dir, batch=16), 12, 3e-3)
    assert after < 0.8 * before


def test_vae_loss_falls(run_dir):
    before, after = _fit(tr.vae_stage(run_dir, batch=4), 10, 2e-3)
    assert after < 0.9 * before


def test_vae_encoder_stage_trains_the_encoder_only_and_its_loss_falls(tmp_path):
    stage = tr.vae_encoder_stage(tmp_path, batch=4)
    decoder = {k: v.clone() for k, v in stage.model.decoder.state_dict().items()}
    trainable = {n for n, p in stage.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.", "quant_conv.")) for n in trainable)
    before, after = _fit(stage, 6, 5e-5)  # from the trained zoo VAE: small steps
    assert after < before
    assert all(torch.equal(decoder[k], v) for k, v in stage.model.decoder.state_dict().items())


def test_unet_loss_falls(run_dir):
    before, after = _fit(tr.unet_stage(run_dir, batch=8), 10, 2e-3)
    assert after < before


def test_controlnet_loss_falls(run_dir):
    before, after = _fit(tr.controlnet_stage(run_dir, batch=8), 10, 2e-3)
    assert after < before


def test_stage_resumes_from_checkpoint(run_dir):
    progress = json.loads((run_dir / "text" / "progress.json").read_text())
    assert progress["step"] == 2
    result = tr.train_text(run_dir, steps=4, batch=8)
    assert result["step"] == 4 and len(result["losses"]) == 4
    assert result["losses"][:2] == progress["losses"]  # the first two steps were not redone


def test_resumed_batches_equal_unbroken_run():
    a, _, sa = common.render_training_batch(common.rng_for(0, 5), 4)
    b, _, sb = common.render_training_batch(common.rng_for(0, 5), 4)
    assert torch.equal(a, b) and sa == sb


def test_latent_cache_has_scaling_and_edges(run_dir):
    from safetensors.torch import load_file
    cache = load_file(run_dir / "latents.safetensors")
    assert cache["mean"].shape == (32, 4, 16, 16) and cache["edges"].shape == (32, 64, 64)
    assert set(cache["edges"].unique().tolist()) <= {0, 255}
    assert float(cache["scaling_factor"]) == pytest.approx(1 / float(cache["mean"].std()), rel=1e-5)
