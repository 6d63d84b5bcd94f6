"""Refining the packaged zoo: each stage starts from the shipped weights, trains what it says, its loss falls."""
import pytest
import torch

from vidlab.backends import ZOO_PATH
from vidlab.training import refine
from test_training import _fit

pytestmark = pytest.mark.skipif(not (ZOO_PATH / "model_index.json").exists(), reason="zoo not exported")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("refine_run")
    refine.cache_zoo_latents(d, n=32, batch=16)
    return d


def test_latent_cache_keeps_the_zoo_scaling_factor(run_dir):
    import json
    from safetensors.torch import load_file
    cache = load_file(run_dir / "latents.safetensors")
    shipped = json.loads((ZOO_PATH / "vae" / "config.json").read_text())["scaling_factor"]
    assert cache["mean"].shape == (32, 4, 16, 16)
    assert float(cache["scaling_factor"]) == pytest.approx(shipped, rel=1e-6)


def test_outline_cells_cover_the_outline_grown_by_one_cell():
    edges = torch.zeros(1, 64, 64, dtype=torch.uint8)
    edges[0, 20:28, 20] = 255           # a vertical stroke in latent column 5, rows 5-6
    cells = refine.outline_cells(edges, 16)[0, 0]
    expected = torch.zeros(16, 16)
    expected[4:8, 4:7] = 1              # rows 5-6 and column 5, each grown by one cell
    assert torch.equal(cells, expected)


def test_weighted_loss_is_plain_mse_at_weight_one_and_favours_the_subject_above():
    torch.manual_seed(0)
    pred, noise = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    cells = torch.zeros(2, 1, 16, 16)
    cells[:, :, 4:8, 4:8] = 1
    ones = torch.ones(2)
    plain = ((pred - noise) ** 2).mean()
    assert refine.weighted_denoising_loss(pred, noise, ones, cells, 1.0) == pytest.approx(float(plain), rel=1e-6)
    err_inside = pred.clone()
    err_inside[:, :, 4:8, 4:8] += 1     # the same extra error inside vs outside the subject
    err_outside = pred.clone()
    err_outside[:, :, 10:14, 10:14] += 1
    assert (refine.weighted_denoising_loss(err_inside, noise, ones, cells, 4.0)
            > refine.weighted_denoising_loss(err_outside, noise, ones, cells, 4.0))


def test_unet_stage_starts_from_the_shipped_unet_and_its_loss_falls(run_dir):
    from diffusers import UNet2DConditionModel
    stage = refine.unet_stage(run_dir, batch=8)
    shipped = UNet2DConditionModel.from_pretrained(ZOO_PATH / "unet").state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in stage.model.state_dict().items())
    before, after = _fit(stage, 6, 1e-4)
    assert after < before


def test_decoder_stage_leaves_the_encoder_and_so_the_latent_space_alone(run_dir):
    stage = refine.decoder_stage(run_dir, batch=4)
    encoder = {k: v.clone() for k, v in stage.model.encoder.state_dict().items()}
    trainable = {n for n, p in stage.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("decoder.", "post_quant_conv.")) for n in trainable)
    before, after = _fit(stage, 6, 5e-5)
    assert after < before
    assert all(torch.equal(encoder[k], v) for k, v in stage.model.encoder.state_dict().items())


def test_controlnet_stage_and_export_round_trip(run_dir, tmp_path):
    from diffusers import ControlNetModel
    refine.train_stage(refine.unet_stage(run_dir, batch=4), run_dir, 1)
    stage = refine.controlnet_stage(run_dir, batch=4)
    before, after = _fit(stage, 4, 1e-4)
    assert after < before
    refine.train_stage(stage, run_dir, 1)
    assert refine.export_refined(run_dir, tmp_path) == ["unet", "controlnet"]
    exported = ControlNetModel.from_pretrained(tmp_path / "controlnet", use_safetensors=True)
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in stage.model.state_dict().items())
