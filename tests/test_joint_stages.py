"""The joint model's staged recipe (`vidlab.training.joint`) and its two-pass sampling, on an untrained
joint model built in the test with the zoo's configs: no test trains. Frames go through the video
transformer with num_frames=1, clips with frame 0 given clean; a stage resumes to the same weights as an
unbroken run; an export reloads through WanPipeline and tells the workbench to sample in two passes."""
import json

import pytest
import torch
from safetensors.torch import load_file

from vidlab.backends import ZOO_PATH, load_backend
from vidlab.strategies import STRATEGIES
from vidlab.strategies.native import FirstFrameHeld, encode_anchors, generate_clips, wan_two_pass
from vidlab.training import joint, joint_data
from vidlab.training.common import LOCAL_KEYS, train_stage
from vidlab.training.wan import build_pool

from test_wan_zoo import PROMPT, build_zoo_wan, request


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained zoo-config WanPipeline folder and a run folder with a tiny frame cache and clip pool."""
    root = tmp_path_factory.mktemp("joint")
    init = build_zoo_wan(root)
    vae = joint.load_parts(init)["vae"]
    joint_data.build_frame_cache(root / "run", vae, n=16, batch=8)
    for name, (start, seed) in joint_data.POOLS.items():
        build_pool(root / "run", 6, seed, start=start, p_growth=0.0, vae=vae, name=name)
    return {"init": init, "dir": root / "run", "root": root}


def test_single_frames_and_anchored_clips_are_the_batches(run):
    parts = joint.load_parts(run["init"])
    data = joint.Batches(run["dir"], parts["vae"])
    from vidlab.training.common import rng_for
    x, texts, cells = data.single_frames(rng_for(0, 1), 6)
    assert x.shape == (6, 4, 1, 32, 32) and len(texts) == 6 and cells is None  # no shape weight asked
    assert any(" moves " in t for t in texts)           # half are clips' first frames with their clip captions
    clips, captions, clip_cells = data.clips(rng_for(0, 1), 3)
    assert clips.shape == (3, 4, 8, 32, 32) and len(captions) == 3 and clip_cells is None
    torch.manual_seed(0)
    again, again_captions, _ = data.clips(rng_for(0, 1), 3)
    torch.manual_seed(0)
    assert torch.equal(again, data.clips(rng_for(0, 1), 3)[0])   # deterministic in the step and torch seed
    assert again_captions == captions


def test_the_centre_pool_gives_its_share_of_clips_read_forwards_from_frame_0(run):
    """centre_share of a step's clips come from pool_centre, from its frame 0 as rendered (never reversed
    or offset: its frame 0 is the centre whatever the caption says); without a share it is not even read."""
    from vidlab.training.common import rng_for
    parts = joint.load_parts(run["init"])
    data = joint.Batches(run["dir"], parts["vae"], centre_share=0.5)
    data._normalise = lambda mean, std: mean           # the posterior means as cached, no sample drawn
    centre = load_file(run["dir"] / "pool_centre.safetensors")["mean"]
    centred = load_file(run["dir"] / "pool.safetensors")["mean"]
    for step in range(4):
        x, captions, _ = data.clips(rng_for(0, step), 4)
        assert x.shape[0] == 4 and len(captions) == 4
        for clip in x[2:]:  # the last two: frames 0-7 of a centre clip, as rendered
            assert any(torch.equal(clip.permute(1, 0, 2, 3), c[:8]) for c in centre)
        for clip in x[:2]:  # the first two: the centred pool, read either way, from frame 0 or 1
            assert any(torch.equal(clip.permute(1, 0, 2, 3), c_[o:o + 8]) for c in centred
                       for c_ in (c, c.flip(0)) for o in (0, 1))
    assert joint.Batches(run["dir"], parts["vae"]).centre is None
    with pytest.raises(ValueError, match="centre_share=1.5"):
        joint.joint_stage(run["dir"], "clips", run["init"], centre_share=1.5)


def test_clip_frames_get_the_shape_cells_of_where_their_subject_is(run, tmp_path):
    """The pools keep each clip's subject centre per frame, the same as its trajectory (a pool cached before
    centres were kept gets them back, checked against its labels); a clip's shape cells follow its subject
    frame by frame, read backwards too, and exist only where asked for."""
    import shutil
    from safetensors.torch import save_file
    from vidlab.training.common import rng_for, shape_difference_cells
    from vidlab.training.wan import pool_chunk, pool_centres
    parts = joint.load_parts(run["init"])
    pool = load_file(run["dir"] / "pool.safetensors")
    chunk = pool_chunk(1, 0, 6, "centred", 0.0)
    assert torch.equal(pool["centres"], pool_centres(chunk))
    assert not torch.equal(pool["labels"], load_file(run["dir"] / "pool_centre.safetensors")["labels"])  # own seeds
    moving = [i for i, c in enumerate(chunk) if c.direction]
    assert moving and all((pool["centres"][i, -1] - pool["centres"][i, 0]).norm() > 4 for i in moving)

    old = tmp_path / "old"  # a run folder cached before the pools kept centres
    shutil.copytree(run["dir"] / "pool_parts", old / "pool_parts")
    shutil.copy(run["dir"] / "frames.safetensors", old)
    part = old / "pool_parts" / "00000.safetensors"
    save_file({k: v for k, v in load_file(part).items() if k != "centres"}, part)
    save_file({k: v for k, v in pool.items() if k != "centres"}, old / "pool.safetensors")
    assert joint.Batches(old, parts["vae"]).clip_cells is False  # not asked: no centres needed
    with pytest.raises(ValueError, match="keep no subject centres per frame"):
        joint.Batches(old, parts["vae"], clip_cells=True)
    assert torch.equal(load_file(build_pool(old, 6, start="centred", p_growth=0.0))["centres"], pool["centres"])
    with pytest.raises(ValueError, match="does not hold the clips of seed=2"):
        build_pool(old, 6, seed=2, start="centred", p_growth=0.0)

    data = joint.Batches(run["dir"], parts["vae"], centre_share=0.5, clip_cells=True)
    _, _, cells = data.clips(rng_for(0, 3), 4)
    assert cells.shape == (4, 1, 8, 32, 32) and cells[:, 0, 0].sum(dim=(-1, -2)).min() > 0
    assert not torch.equal(cells[:, :, 0], cells[:, :, -1])  # they move with the subjects
    labels, matched = pool["labels"], 0
    for clip_cells in cells[:2, 0]:  # the centred pool's clips: each is some pool clip's, read either way
        for i in range(len(labels)):
            attrs = torch.zeros(9, 5, dtype=torch.long)
            attrs[:, 0], attrs[:, 4] = labels[i, 0], labels[i, 3]
            every = shape_difference_cells(attrs, pool["centres"][i], 32)[:, 0]
            if any(torch.equal(clip_cells, e[o:o + 8]) for e in (every, every.flip(0)) for o in (0, 1)):
                matched += 1
                break
    assert matched == 2
    with pytest.raises(ValueError, match="clip_shape_weight=0.5"):
        joint.joint_stage(run["dir"], "clips", run["init"], clip_shape_weight=0.5)


@pytest.mark.parametrize("start", ["fits", "centred", "centre"])
def test_where_frame_0_is_drawn(start):
    """'centre' puts every clip's frame 0 near the centre whatever its motion (the subject may leave);
    the others keep the whole path inside the frame, 'centred' with its midpoint at the centre."""
    import numpy as np
    from vidlab.world.clips import CENTRED_JITTER, random_clip
    from vidlab.world.shapes import IMAGE_SIZE
    rng = np.random.default_rng(0)
    for _ in range(40):
        clip = random_clip(rng, 8, p_still=0.0, p_growth=0.0, p_camera=0.0, start=start)
        path = np.array([(x, y) for x, y, _, _ in clip.trajectory()])
        inside = bool(((path - clip.scene.radius - 1 >= -1e-6) & (path + clip.scene.radius + 1 <= IMAGE_SIZE + 1e-6)).all())
        if start == "centre":
            assert np.abs(path[0] - IMAGE_SIZE / 2).max() <= CENTRED_JITTER and clip.direction is not None
        else:
            assert inside
        if start == "centred":
            assert np.abs((path[0] + path[-1]) / 2 - IMAGE_SIZE / 2).max() <= CENTRED_JITTER + 1e-6
    with pytest.raises(ValueError, match="start='middle'"):
        random_clip(rng, 8, start="middle")


def test_the_clip_pass_measure_reads_directions_from_a_centre_frame_0(run):
    """anchored_numbers runs end to end on an untrained model (numbers in [0, 1]); its direction reader
    follows a subject that leaves the frame, and the ground truth of every test motion reads right."""
    from vidlab.training import wan_ladder
    clips = wan_ladder.centre_motions(16)
    assert [(c.direction, c.speed) for c in clips[:16]] == [(d, s) for d in wan_ladder.DIRECTIONS
                                                            for s in wan_ladder.SPEEDS]
    assert all(wan_ladder.direction_seen(c.render()) == c.direction for c in clips)
    from diffusers import WanPipeline
    pipe = WanPipeline.from_pretrained(run["init"])
    pipe.set_progress_bar_config(disable=True)
    numbers = wan_ladder.anchored_numbers(pipe, n=2, steps=2)
    assert numbers["n"] == 2 and 0.0 <= numbers["direction_right"] <= 1.0 and 0.0 <= numbers["opposite_right"] <= 1.0


class ZeroEncoder(torch.nn.Module):
    """A text encoder that gives zero states: the loss tests' transformers read no text."""

    def forward(self, ids, mask):
        return type("O", (), {"last_hidden_state": torch.zeros(ids.shape[0], ids.shape[1], 8)})()


def test_clip_loss_ignores_frame_0_and_gives_it_clean():
    """With first_frame_clean the transformer sees frame 0 as it is, and frame 0's error counts nothing."""
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, xt, t, states, return_dict=False):
            seen["xt"] = xt
            out = torch.zeros_like(xt)
            out[:, :, 0] = 1e6                               # a huge error on frame 0 only
            return (out,)

    from vidlab.world.tokenizer import build_tokenizer
    model = type("M", (), {"transformer": Probe(), "encoder": ZeroEncoder()})()
    x0 = torch.randn(2, 4, 3, 8, 8)
    loss = joint.flow_loss(model, build_tokenizer(), x0, ["a", "b"], 1.0, first_frame_clean=True)
    assert torch.equal(seen["xt"][:, :, 0], x0[:, :, 0]) and loss < 1e3
    loss_all = joint.flow_loss(model, build_tokenizer(), x0, ["a", "b"], 1.0)
    assert loss_all > 1e9 and not torch.equal(seen["xt"][:, :, 0], x0[:, :, 0])


@pytest.mark.parametrize("stage", joint.STAGES)
def test_a_resumed_stage_ends_where_an_unbroken_one_does(run, stage, tmp_path):
    import shutil
    for name in ("frames.safetensors", *(f"{p}.safetensors" for p in joint_data.POOLS)):
        for d in (tmp_path / "a", tmp_path / "b"):
            d.mkdir(exist_ok=True)
            shutil.copy(run["dir"] / name, d / name)
    kw = dict(batch=4, clip_batch=2, monitor_every=0)
    unbroken = joint.joint_stage(tmp_path / "a", stage, run["init"], **kw)
    train_stage(unbroken, tmp_path / "a", 4)
    first = joint.joint_stage(tmp_path / "b", stage, run["init"], **kw)
    train_stage(first, tmp_path / "b", 2)
    resumed = joint.joint_stage(tmp_path / "b", stage, run["init"], **kw)
    progress = train_stage(resumed, tmp_path / "b", 4)
    assert progress["step"] == 4
    a, b = (load_file(tmp_path / d / stage / "state.safetensors") for d in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = joint.load_parts(run["init"])["transformer"].state_dict()
    assert not torch.equal(a["transformer.proj_out.weight"], start["proj_out.weight"])  # it did train


@pytest.fixture(scope="module")
def exported(run):
    """The clips stage after one step, exported as a zoo's wan/ folder."""
    stage = joint.joint_stage(run["dir"], "clips", run["init"], clip_batch=2, monitor_every=0)
    train_stage(stage, run["dir"], 1)
    return joint.export_stage(run["dir"], "clips", out_dir=run["root"] / "zoo", init=run["init"])


def test_an_export_reloads_through_wan_pipeline_and_samples_in_two_passes(run, exported, tiny_sd):
    from diffusers import WanPipeline
    out = exported
    recipe = json.loads((out / joint.RECIPE_FILE).read_text())
    assert recipe == {"first_frame": "clean", "stage": "clips", "steps": 1}
    configs = [json.loads(f.read_text()) for f in out.rglob("*.json")]
    assert not [k for c in configs for k in c if k in LOCAL_KEYS]   # no path of this machine is shipped
    pipe = WanPipeline.from_pretrained(out)
    ema = load_file(run["dir"] / "clips" / "ema.safetensors")
    assert torch.equal(pipe.transformer.proj_out.weight, ema["transformer.proj_out.weight"])
    backend = load_backend(tiny_sd["base"], wan=str(out))
    assert backend.wan_first_frame == "clean"
    frames, _ = STRATEGIES["native"](backend, request(frames=5), {})
    again, _ = STRATEGIES["native"](backend, request(frames=5), {})
    assert frames.shape == (5, 3, 64, 64) and torch.equal(frames, again)
    # every seed's clip in one call is the clip of that seed alone
    both = generate_clips(backend, request(frames=5), PROMPT, 5, [3, 4])
    alone = generate_clips(backend, request(frames=5), PROMPT, 5, [4])
    assert torch.equal(both[0], frames) and torch.equal(both[1], alone[0])
    plain = load_backend(tiny_sd["base"], wan=run["init"])
    assert plain.wan_first_frame is None


def test_an_export_needs_only_the_stages_checkpoint_not_the_runs_data(run, exported, tmp_path):
    """A checkpoint copied out of its run (no frame or clip cache beside it) exports the same weights; a folder
    without the stage's checkpoint, and a stage that is none, are refused by name."""
    import shutil
    from diffusers import WanPipeline
    shutil.copytree(run["dir"] / "clips", tmp_path / "copy" / "clips")
    assert not list((tmp_path / "copy").glob("*.safetensors"))
    out = joint.export_stage(tmp_path / "copy", "clips", out_dir=tmp_path / "zoo", init=run["init"])
    again, first = WanPipeline.from_pretrained(out).transformer, WanPipeline.from_pretrained(exported).transformer
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="run_dir=.*has no frames/state.safetensors"):
        joint.export_stage(tmp_path / "copy", "frames", out_dir=tmp_path / "zoo2", init=run["init"])
    with pytest.raises(ValueError, match=r"stage='clip' is not one of \['frames', 'clips'\]"):
        joint.export_stage(tmp_path / "copy", "clip", out_dir=tmp_path / "zoo2", init=run["init"])


def test_two_pass_holds_frame_0_and_an_image_anchor_gives_it(run):
    pipe = joint.pipeline_of(joint.load_parts(run["init"]), joint.WanTrainee(*[joint.load_parts(run["init"])[k]
                                                                            for k in ("transformer", "text_encoder")]))
    call = dict(prompt=[PROMPT], height=64, width=64, num_inference_steps=2, guidance_scale=4.0,
                max_sequence_length=24, generator=[torch.Generator().manual_seed(1)])
    anchor = encode_anchors(pipe, [torch.rand(3, 64, 64)])[0]
    with torch.no_grad():
        latents = wan_two_pass(pipe, call, 4, anchors=anchor)
        first = pipe(**dict(call, generator=[torch.Generator().manual_seed(1)]), num_frames=0,
                     output_type="latent").frames
        text = wan_two_pass(pipe, dict(call, generator=[torch.Generator().manual_seed(1)]), 4)
    assert latents.shape == (1, 4, 4, 32, 32) and torch.equal(latents[:, :, :1], anchor)
    assert torch.equal(text[:, :, :1], first)             # pass 1 is a one-frame call of the same model
    held = FirstFrameHeld(anchor)(pipe, 0, None, {"latents": torch.zeros(1, 4, 3, 32, 32)})["latents"]
    assert torch.equal(held[:, :, 0:1], anchor) and not held[:, :, 1:].any()


def test_bad_stage_and_recipe_are_refused(run, tmp_path):
    with pytest.raises(ValueError, match=r"stage='clip' is not one of \['frames', 'clips'\]"):
        joint.joint_stage(run["dir"], "clip", run["init"])
    with pytest.raises(ValueError, match="frame_share=1.0 must be in"):
        joint.joint_stage(run["dir"], "clips", run["init"], frame_share=1.0)
    from vidlab.backends.loading import wan_recipe
    (tmp_path / "vidlab_video.json").write_text('{"first_frame": "noisy"}')
    with pytest.raises(ValueError, match="first_frame='noisy' is not one of"):
        wan_recipe(str(tmp_path))


def test_first_frame_option_starts_the_clip_from_an_image_file(exported, tiny_sd, tmp_path):
    import cv2
    import numpy as np
    from pydantic import ValidationError

    from vidlab.strategies.native import NativeOptions
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "first.png"), image)
    backend = load_backend(tiny_sd["base"], wan=str(exported))
    frames, rec = STRATEGIES["native"](backend, request(frames=4), {"first_frame": str(tmp_path / "first.png")})
    pipe = backend.pipeline("wan")
    pixels = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
    with torch.no_grad():   # frame 0 is the image's latent, held clean: it decodes as the image's round trip
        z = pipe.vae.encode((pixels * 2 - 1)[None, :, None]).latent_dist.mean
        round_trip = (pipe.vae.decode(z).sample[0, :, 0] / 2 + 0.5).clamp(0, 1)
    assert frames.shape == (4, 3, 64, 64) and rec["first_frame"] == str(tmp_path / "first.png")
    assert torch.allclose(frames[0], round_trip, atol=1e-4)
    (tmp_path / "not.png").write_text("text")
    for path, says in ((tmp_path / "missing.png", "is not a file"), (tmp_path / "not.png", "could not read")):
        with pytest.raises(ValidationError, match=says):
            NativeOptions.model_validate({"first_frame": str(path)})


def test_the_decoder_fine_tune_leaves_the_latent_space_where_it_was(run, tmp_path):
    from vidlab.training.wan_parts import is_framewise
    from vidlab.training.wan_vae import decoder_stage, export_decoder
    vae_dir = run["init"] + "/vae"
    stage = decoder_stage(vae_dir, batch=2)
    before = {k: v.clone() for k, v in stage.model.state_dict().items()}
    train_stage(stage, tmp_path, 2)
    after = stage.model.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert "decoder" in changed and changed <= {"decoder", "post_quant_conv"}  # encoder untouched: latents stay valid
    assert is_framewise(stage.model)
    out = export_decoder(tmp_path, vae_dir, tmp_path / "zoo")
    from diffusers import AutoencoderKLWan
    shipped = AutoencoderKLWan.from_pretrained(out)
    assert torch.equal(shipped.decoder.conv_out.weight, after["decoder.conv_out.weight"])
    assert not set(LOCAL_KEYS) & json.loads((out / "config.json").read_text()).keys()  # no path of this machine


def test_a_deeper_decoder_starts_as_the_vae_it_deepens_and_only_its_decoder_trains(run, tmp_path):
    from diffusers import AutoencoderKLWan

    from vidlab.training.wan_vae import decoder_stage, deeper_vae, export_decoder
    vae_dir = run["init"] + "/vae"
    vae = AutoencoderKLWan.from_pretrained(vae_dir).eval()
    deep = deeper_vae(vae).eval()
    assert deep.config.num_res_blocks == vae.config.num_res_blocks + 1
    video = torch.rand(1, 3, 2, 64, 64) * 2 - 1
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mean
        assert torch.equal(deep.encode(video).latent_dist.mean, z)    # the new blocks are identities, bit for bit
        assert torch.equal(deep.decode(z).sample, vae.decode(z).sample)
    with pytest.raises(ValueError, match="extra_res_blocks=0"):
        deeper_vae(vae, 0)
    stage = decoder_stage(vae_dir, batch=2, extra_res_blocks=1)
    before = {k: v.clone() for k, v in stage.model.state_dict().items()}
    train_stage(stage, tmp_path, 3)
    after = stage.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert any(k.startswith("decoder.up_blocks.0.resnets.2.") for k in changed)   # the decoder's new block trains
    assert all(k.split(".")[0] in ("decoder", "post_quant_conv") for k in changed)  # the encoder's stays an identity
    with pytest.raises(ValueError, match="--extra-res-blocks"):                   # exported as it was trained
        export_decoder(tmp_path, vae_dir, tmp_path / "zoo")
    out = export_decoder(tmp_path, vae_dir, tmp_path / "zoo", extra_res_blocks=1)
    shipped = AutoencoderKLWan.from_pretrained(out)
    assert torch.equal(shipped.decoder.up_blocks[0].resnets[2].conv2.weight,
                       after["decoder.up_blocks.0.resnets.2.conv2.weight"])
    with torch.no_grad():
        assert torch.equal(shipped.eval().encode(video).latent_dist.mean, z)      # the latents it was trained on


def test_a_grown_transformer_computes_what_it_grew_from_and_its_run_keeps_the_growth(run, tmp_path):
    import shutil

    from diffusers import WanPipeline

    from vidlab.training.wan_parts import grown_transformer
    small = joint.load_parts(run["init"])["transformer"].eval()
    with torch.no_grad():  # an untrained model's output projection is zero: give it weights to pass on
        small.proj_out.weight.normal_(0, 0.1)
        for block in small.blocks:
            block.ffn.net[-1].weight.normal_(0, 0.1)
    big = grown_transformer(small, num_layers=2 * small.config.num_layers, ffn_dim=2 * small.config.ffn_dim).eval()
    assert (big.config.num_layers, big.config.ffn_dim) == (2 * small.config.num_layers, 2 * small.config.ffn_dim)
    assert torch.equal(big.blocks[2].attn1.to_q.weight, small.blocks[1].attn1.to_q.weight)  # old block 1 at 2
    x, t, text = torch.randn(2, 4, 3, 32, 32), torch.tensor([300.0, 800.0]), torch.randn(2, 5, 64)
    with torch.no_grad():
        want = small(x, t, text, return_dict=False)[0]
        got = big(x, t, text, return_dict=False)[0]
    assert want.abs().mean() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # new blocks and units add nothing (but rounding)
    with pytest.raises(ValueError, match="can only grow"):
        grown_transformer(big, num_layers=small.config.num_layers)
    with pytest.raises(ValueError, match="as it is"):
        grown_transformer(small, num_layers=small.config.num_layers)

    for name in ("frames.safetensors", *(f"{p}.safetensors" for p in joint_data.POOLS)):
        shutil.copy(run["dir"] / name, tmp_path / name)
    stage = joint.joint_stage(tmp_path, "clips", run["init"], clip_batch=2, monitor_every=0, num_layers=5)
    assert stage.model.transformer.config.num_layers == 5
    train_stage(stage, tmp_path, 1)
    resumed = joint.joint_stage(tmp_path, "clips", run["init"], clip_batch=2, monitor_every=0)  # as recorded
    assert resumed.model.transformer.config.num_layers == 5
    with pytest.raises(ValueError, match="--num-layers"):
        joint.joint_stage(tmp_path, "clips", run["init"], monitor_every=0, num_layers=6)
    out = joint.export_stage(tmp_path, "clips", out_dir=tmp_path / "zoo", init=run["init"])
    pipe = WanPipeline.from_pretrained(out)
    ema = load_file(tmp_path / "clips" / "ema.safetensors")
    assert pipe.transformer.config.num_layers == 5
    assert torch.equal(pipe.transformer.blocks[4].ffn.net[2].weight, ema["transformer.blocks.4.ffn.net.2.weight"])


def test_finer_tokens_start_as_the_model_on_the_frame_enlarged_and_their_run_keeps_the_patch(run, tmp_path):
    import shutil

    import torch.nn.functional as F
    from diffusers import WanPipeline

    from vidlab.training.wan_parts import GROWN_FILE, architecture, grown_transformer
    coarse = joint.load_parts(run["init"])["transformer"].eval()
    with torch.no_grad():  # an untrained model's output projection is zero: give it weights to pass on
        coarse.proj_out.weight.normal_(0, 0.1)
        coarse.proj_out.bias.normal_(0, 0.1)
    fine = grown_transformer(coarse, patch=2).eval()
    assert architecture(fine) == {**architecture(coarse), "patch": 2} and architecture(coarse)["patch"] == 4
    assert torch.equal(fine.blocks[1].attn2.to_k.weight, coarse.blocks[1].attn2.to_k.weight)  # blocks as they were
    x, t, text = torch.randn(2, 4, 2, 16, 24), torch.tensor([300.0, 800.0]), torch.randn(2, 5, 64)
    with torch.no_grad():
        got = fine(x, t, text, return_dict=False)[0]
        enlarged = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        want = F.avg_pool3d(coarse(enlarged, t, text, return_dict=False)[0], (1, 2, 2))
    assert got.shape == x.shape and want.abs().mean() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # the same tokens, positions and outputs
    with pytest.raises(ValueError, match="patch must divide its 4"):
        grown_transformer(coarse, patch=3)
    with pytest.raises(ValueError, match="as it is"):
        grown_transformer(coarse, patch=4)

    for name in ("frames.safetensors", *(f"{p}.safetensors" for p in joint_data.POOLS)):
        shutil.copy(run["dir"] / name, tmp_path / name)
    with pytest.raises(ValueError, match="patch must divide its 4"):
        joint.joint_stage(tmp_path, "frames", run["init"], batch=2, monitor_every=0, patch=3)
    assert not (tmp_path / "frames" / GROWN_FILE).exists()  # refused before the run recorded it
    stage = joint.joint_stage(tmp_path, "frames", run["init"], batch=2, monitor_every=0, patch=2)
    assert list(stage.model.transformer.config.patch_size) == [1, 2, 2]
    train_stage(stage, tmp_path, 1)
    resumed = joint.joint_stage(tmp_path, "frames", run["init"], batch=2, monitor_every=0)  # as recorded
    assert list(resumed.model.transformer.config.patch_size) == [1, 2, 2]
    with pytest.raises(ValueError, match="--patch"):
        joint.joint_stage(tmp_path, "frames", run["init"], monitor_every=0, patch=1)
    out = joint.export_stage(tmp_path, "frames", out_dir=tmp_path / "zoo", init=run["init"])
    pipe = WanPipeline.from_pretrained(out)
    assert list(pipe.transformer.config.patch_size) == [1, 2, 2]
    ema = load_file(tmp_path / "frames" / "ema.safetensors")
    assert torch.equal(pipe.transformer.proj_out.weight, ema["transformer.proj_out.weight"])


JOINT_RECORD = ZOO_PATH / "joint_stages.json"


@pytest.mark.skipif(not JOINT_RECORD.exists(), reason="no staged joint model recorded in the zoo yet")
def test_the_card_reports_the_staged_joint_models_recorded_numbers():
    """The card's joint section is joint_stages.json's numbers (experiments/record_joint.py), and the shipped
    model's recipe file names the stage and step the record ends with."""
    record = json.loads(JOINT_RECORD.read_text())
    card = (ZOO_PATH / "MODEL_CARD.md").read_text()
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    for stage in record["stages"]:
        assert f"| {stage['stage']} | {stage['steps']} | {stage['minutes']:.1f} |" in card
        for row in stage["monitor"]:
            assert f"| {row['step']} | {pct(row['rung0']['color'])} | {pct(row['rung0']['shape'])} " in card
    shipped = json.loads((ZOO_PATH / "wan" / joint.RECIPE_FILE).read_text())
    last = [s for s in record["stages"] if s.get("trained_as", s["stage"]) in joint.STAGES][-1]
    last_stage = last.get("trained_as", last["stage"])  # a stage continued in another run keeps its name there
    assert (shipped["stage"], shipped["steps"]) == (last_stage, last["steps"])
    assert shipped.get("first_frame") == ("clean" if last_stage == "clips" else None)
    assert load_backend("shapes-tiny-joint").wan_first_frame == shipped.get("first_frame")


def test_a_record_update_adds_stages_and_notes_and_keeps_what_it_is_not_given():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from record_joint import updated

    old = {"stages": [{"stage": "frames"}], "commands": {"frames": "recipe a"}, "notes": ["first"],
           "vae": {"before": {"shape": 0.8}, "after": {"shape": 0.9}, "more": {"more": {"shape": 0.91}}},
           "probe": {"anchored": {"d": 1}}, "shipped": {"subject_kept": 0.7}, "shape_study": {"s": 1},
           "shift_study": {"arms": {}}, "guidance": {"chosen": 2.5}}
    new = {"stages": [{"stage": "clips, grown"}], "commands": {"clips, grown": "recipe b"}, "notes": ["second"],
           "vae": {"before": None, "after": None, "more": {}}, "probe": {}, "shipped": {"subject_kept": 0.8},
           "shape_study": None, "shift_study": None, "guidance": None, "capacity_study": {"arms": {"grown": {}}}}
    out = updated(old, new)
    assert [s["stage"] for s in out["stages"]] == ["frames", "clips, grown"] and out["notes"] == ["first", "second"]
    assert out["commands"] == {"frames": "recipe a", "clips, grown": "recipe b"}
    assert out["shipped"] == {"subject_kept": 0.8} and out["capacity_study"] == {"arms": {"grown": {}}}
    assert {k: out[k] for k in ("vae", "probe", "shape_study", "shift_study", "guidance")} == \
        {k: old[k] for k in ("vae", "probe", "shape_study", "shift_study", "guidance")}
    assert old["stages"] == [{"stage": "frames"}]  # the record read is not changed in place


def test_a_monitor_measures_the_ema_weights_once_a_step_and_gives_the_live_ones_back(tmp_path):
    from vidlab.training.common import MonitorLog
    model = torch.nn.Linear(2, 1).train()
    live = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: torch.full_like(v, 7.0) for k, v in model.named_parameters()}
    seen = []
    measure = lambda m: seen.append((m.weight.sum().item(), m.training)) or {"x": len(seen)}  # noqa: E731
    log = MonitorLog(tmp_path / "monitor.jsonl", every=5)
    assert [log.maybe_run(s, model, ema, measure) is not None for s in (0, 3, 5, 5)] == [False, False, True, False]
    assert seen == [(14.0, False)]                          # the EMA weights, in eval mode
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items()) and model.training
    resumed = MonitorLog(tmp_path / "monitor.jsonl", every=5)  # a resumed run does not measure step 5 again
    assert resumed.maybe_run(5, model, ema, measure) is None and resumed.maybe_run(10, model, ema, measure)["x"] == 2
    rows = [json.loads(line) for line in (tmp_path / "monitor.jsonl").read_text().splitlines()]
    assert [(r["step"], r["x"]) for r in rows] == [(5, 1), (10, 2)]


def test_shape_cells_cover_where_the_rendered_shapes_differ():
    """`shape_difference_cells` marks the latent cells where a subject differs from the other shapes of its
    size at its centre: every rendered pixel where they differ lies in a marked cell, and the marks stay
    near the subject (a small share of the frame)."""
    import numpy as np
    from vidlab.training.common import scene_attrs, shape_difference_cells
    from vidlab.world.shapes import SHAPES, random_scene, shape_mask
    rng = np.random.default_rng(3)
    scenes = [random_scene(rng, "all") for _ in range(24)]
    centres = torch.tensor([s.resolved_center() for s in scenes])
    cells = shape_difference_cells(scene_attrs(scenes), centres, 32)
    assert cells.shape == (24, 1, 32, 32)
    for scene, marked in zip(scenes, cells[:, 0].bool().numpy()):
        cx, cy = scene.resolved_center()
        own = shape_mask(scene.shape, cx, cy, scene.radius, 64, 64) > 0.5
        differ = np.zeros_like(own)
        for other in SHAPES:
            differ |= own ^ (shape_mask(other, cx, cy, scene.radius, 64, 64) > 0.5)
        ys, xs = np.nonzero(differ)
        assert len(ys) > 0 and marked[ys // 2, xs // 2].all()
        assert 0 < marked.mean() < 0.25
        my, mx = np.nonzero(marked)
        assert np.abs(mx * 2 + 1 - cx).max() <= scene.radius + 5 and np.abs(my * 2 + 1 - cy).max() <= scene.radius + 5


def test_the_shape_weight_marks_scene_frames_and_needs_a_cache_with_centres(run, tmp_path):
    from vidlab.training.common import rng_for
    parts = joint.load_parts(run["init"])
    data = joint.Batches(run["dir"], parts["vae"], shape_cells=True)
    x, texts, cells = data.single_frames(rng_for(0, 1), 6)
    assert cells.shape == (6, 1, 1, 32, 32)
    assert all(c.any() for c in cells[:3]) and not cells[3:].any()   # scenes marked, clips' first frames not
    frames = load_file(run["dir"] / "frames.safetensors")
    old = tmp_path / "old"
    old.mkdir()
    from safetensors.torch import save_file
    save_file({k: v for k, v in frames.items() if k != "centre"}, old / "frames.safetensors")
    for name in ("pool.safetensors",):
        (old / name).symlink_to(run["dir"] / name)
    with pytest.raises(ValueError, match="has no subject centres"):
        joint.Batches(old, parts["vae"], shape_cells=True)
    with pytest.raises(ValueError, match="shape_weight=0.5 must be >= 1"):
        joint.joint_stage(run["dir"], "frames", run["init"], shape_weight=0.5)


def run_with_shapes(run, folder, shapes: torch.Tensor):
    """A run folder `folder` whose frame cache is `run`'s with its scenes' shapes (indices into SHAPES) replaced,
    beside links to `run`'s clip pools."""
    from safetensors.torch import save_file
    frames = load_file(run["dir"] / "frames.safetensors")
    attrs = frames["attrs"].clone()
    attrs[:, 0] = shapes
    folder.mkdir()
    save_file({**frames, "attrs": attrs}, folder / "frames.safetensors")
    for name in ("pool", "pool_centre"):
        (folder / f"{name}.safetensors").symlink_to(run["dir"] / f"{name}.safetensors")
    return folder


def test_the_square_share_draws_that_share_of_scene_frames_as_squares_and_leaves_the_default_draw_alone(run,
                                                                                                         tmp_path):
    from vidlab.training.common import rng_for
    from vidlab.world.captions import SHAPE_WORDS
    from vidlab.world.shapes import SHAPES
    parts = joint.load_parts(run["init"])
    frames = load_file(run["dir"] / "frames.safetensors")
    square, circle = SHAPES.index("square"), SHAPES.index("circle")
    # the tiny cache may have no square: give it two, so both kinds can be drawn
    shapes = torch.where(frames["attrs"][:, 0] == square, circle, frames["attrs"][:, 0])
    mixed = run_with_shapes(run, tmp_path / "mixed", torch.cat([torch.full((2,), square), shapes[2:]]))
    for share, squares in ((0.5, 2), (1.0, 4), (0.0, 0)):
        data = joint.Batches(mixed, parts["vae"], caption_dropout=0.0, square_share=share)
        _, texts, _ = data.single_frames(rng_for(0, 1), 8)        # 4 scenes, 4 clips' first frames
        assert sum(any(w in t.split() for w in SHAPE_WORDS["square"]) for t in texts[:4]) == squares, texts[:4]
    default = joint.Batches(mixed, parts["vae"])
    torch.manual_seed(0)
    x, texts, _ = default.single_frames(rng_for(0, 1), 8)
    torch.manual_seed(0)
    again, again_texts, _ = joint.Batches(mixed, parts["vae"], square_share=None).single_frames(rng_for(0, 1), 8)
    assert torch.equal(x, again) and texts == again_texts           # None: the draw as before
    no_squares = run_with_shapes(run, tmp_path / "no_squares", shapes)
    with pytest.raises(ValueError, match="square_share=0.5 needs square scenes"):
        joint.Batches(no_squares, parts["vae"], square_share=0.5)
    with pytest.raises(ValueError, match=r"square_share=1.5 must be in \[0, 1\]"):
        joint.joint_stage(run["dir"], "frames", run["init"], square_share=1.5)


def one_cell_loss(**kw) -> float:
    """`flow_loss` of a model whose prediction is wrong by a huge amount on latent cell (2, 3) only."""
    class Probe(torch.nn.Module):
        def forward(self, xt, t, states, return_dict=False):
            out = torch.zeros_like(xt)
            out[:, :, :, 2, 3] = 1e3
            return (out,)

    from vidlab.world.tokenizer import build_tokenizer
    model = type("M", (), {"transformer": Probe(), "encoder": ZeroEncoder()})()
    torch.manual_seed(0)
    return float(joint.flow_loss(model, build_tokenizer(), torch.zeros(2, 4, 1, 8, 8), ["a", "b"], 1.0, **kw))


def test_the_shape_weight_multiplies_the_marked_cells_error():
    cells = torch.zeros(2, 1, 1, 8, 8)
    cells[:, :, :, 2, 3] = 1
    loss, plain = one_cell_loss, one_cell_loss()
    assert loss(shape_cells=cells, shape_weight=1.0) == plain
    assert 9.9 < loss(shape_cells=cells, shape_weight=10.0) / plain <= 10.0


def test_corner_cells_mark_where_a_square_and_a_circle_differ_on_those_two_shapes_only():
    """`shape_difference_cells(against=CORNER_PAIR, grow=0)`: on square and circle scenes, exactly the latent
    cells holding a pixel where the rendered square and circle of the subject's place and size differ (a ring
    inside the all-shape cells); nothing on triangles and diamonds; a bad `against` is refused by name."""
    import numpy as np
    from vidlab.training.common import CORNER_PAIR, scene_attrs, shape_difference_cells
    from vidlab.world.shapes import random_scene, shape_mask
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, "all") for _ in range(32)]
    attrs, centres = scene_attrs(scenes), torch.tensor([s.resolved_center() for s in scenes])
    corners = shape_difference_cells(attrs, centres, 32, against=CORNER_PAIR, grow=0)
    every = shape_difference_cells(attrs, centres, 32)
    assert corners.shape == (32, 1, 32, 32) and bool((corners <= every).all())
    assert {s.shape for s in scenes} == {"circle", "square", "triangle", "diamond"}
    for scene, marked in zip(scenes, corners[:, 0].bool().numpy()):
        if scene.shape not in CORNER_PAIR:
            assert not marked.any()
            continue
        cx, cy = scene.resolved_center()
        differ = (shape_mask("square", cx, cy, scene.radius, 64, 64) > 0.5) ^ (
            shape_mask("circle", cx, cy, scene.radius, 64, 64) > 0.5)
        ys, xs = np.nonzero(differ)   # anti-aliased renders: the analytic drawing may miss a border pixel
        near = torch.nn.functional.max_pool2d(torch.tensor(marked[None], dtype=torch.float32), 3, 1, 1)[0].bool()
        assert len(ys) > 0 and marked[ys // 2, xs // 2].mean() >= 0.8 and near.numpy()[ys // 2, xs // 2].all()
        assert marked.sum() <= 2 * len(set(zip(ys // 2, xs // 2)))   # not much more than the rendered cells
    for bad in (("square",), ("square", "hexagon")):
        with pytest.raises(ValueError, match="against=.* must name two or more of"):
            shape_difference_cells(attrs, centres, 32, against=bad)


def test_the_corner_weight_adds_a_second_cell_channel_and_counts_it_that_many_times(run):
    from vidlab.training.common import CORNER_PAIR, rng_for, shape_difference_cells
    parts = joint.load_parts(run["init"])
    data = joint.Batches(run["dir"], parts["vae"], corner_cells=True)
    assert data.shape_cells                                       # the corner cells need the frames' centres
    x, texts, cells = data.single_frames(rng_for(0, 1), 6)
    assert cells.shape == (6, 2, 1, 32, 32) and not cells[3:].any()   # clips' first frames unmarked
    frames = load_file(run["dir"] / "frames.safetensors")
    idx = rng_for(0, 1).integers(0, frames["mean"].shape[0], 3)  # the scene frames single_frames drew
    want = shape_difference_cells(frames["attrs"][idx], frames["centre"][idx], 32, against=CORNER_PAIR, grow=0)
    assert torch.equal(cells[:3, 1:, 0], want)
    clip_cells = joint.Batches(run["dir"], parts["vae"], clip_cells=True, corner_cells=True).clips(rng_for(0, 2), 3)[2]
    assert clip_cells.shape == (3, 2, 8, 32, 32)

    two = torch.zeros(2, 2, 1, 8, 8)
    two[:, 1, :, 2, 3] = 1                                        # a corner cell that is no shape cell
    loss, plain = one_cell_loss, one_cell_loss()
    assert loss(shape_cells=two, shape_weight=10.0) == plain     # corner_weight 1: the channel counts once
    assert 29.9 < loss(shape_cells=two, shape_weight=10.0, corner_weight=30.0) / plain <= 30.0
    with pytest.raises(ValueError, match="corner_weight=0.5 must be >= 1"):
        joint.joint_stage(run["dir"], "frames", run["init"], corner_weight=0.5)


def test_the_frame_shift_draws_the_single_frames_noise_levels_and_leaves_the_clips_alone(run, monkeypatch):
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, xt, t, states, return_dict=False):
            seen.append(t / 1000)
            return (torch.zeros_like(xt),)

    from vidlab.training.wan import flow_sigmas
    from vidlab.world.tokenizer import build_tokenizer
    model = type("M", (), {"transformer": Probe(), "encoder": ZeroEncoder()})()
    for shift in (1.0, 2.0, 4.0):
        torch.manual_seed(0)
        joint.flow_loss(model, build_tokenizer(), torch.zeros(256, 4, 1, 2, 2), [""] * 256, 1.0, shift=shift)
        torch.manual_seed(0)
        torch.randn(256, 4, 1, 2, 2)                                # the noise is drawn first
        assert torch.allclose(seen[-1], flow_sigmas(torch.rand(256), shift))
    assert seen[0].mean() < seen[1].mean() < seen[2].mean()      # larger shift: higher noise levels

    calls = []
    monkeypatch.setattr(joint, "flow_loss", lambda *a, **kw: calls.append(kw) or torch.zeros(()))
    for stage in joint.STAGES:
        calls.clear()
        joint.joint_stage(run["dir"], stage, run["init"], monitor_every=0, frame_shift=5.0, batch=4).loss_fn(0)
        assert calls[0]["shift"] == 5.0 and all("shift" not in kw for kw in calls[1:])
        assert len(calls) == (1 if stage == "frames" else 2)
    with pytest.raises(ValueError, match="frame_shift=0.0 must be > 0"):
        joint.joint_stage(run["dir"], "frames", run["init"], frame_shift=0.0)


def test_the_ladder_intervals_hold_their_estimates_and_narrow_with_more_clips():
    """`wan_ladder.intervals`: the per-clip shares' t intervals and the speed ratio's bootstrap interval
    contain the point estimates, shrink as the clips quadruple, and are the same on a second call."""
    import numpy as np
    from vidlab.training.wan_ladder import intervals

    def rows(n):
        rng = np.random.default_rng(n)
        return [{"direction_right": bool(rng.random() < 0.8), "constancy": float(rng.random()),
                 "subject_kept": float(rng.random() < 0.3), "speed": "quickly" if i % 2 else "slowly",
                 "displacement": (float(rng.normal(42 if i % 2 else 28, 4)), 0.0)} for i in range(n)]

    few, many = intervals(rows(16)), intervals(rows(64))
    for key in ("direction_right", "constancy", "subject_kept"):
        value = np.mean([r[key] for r in rows(64)])
        assert many[key][0] <= value <= many[key][1]
        assert many[key][1] - many[key][0] < few[key][1] - few[key][0]
    assert many["speed_ratio"][0] < 42 / 28 < many["speed_ratio"][1] < 2.0
    assert intervals(rows(64)) == many
    assert "speed_ratio" not in intervals(rows(2))  # one clip a speed: no bootstrap to speak of


def test_the_word_margin_pushes_only_square_and_circle_captions_apart_and_only_in_the_text_encoder(run, monkeypatch):
    margin_loss = joint.word_margin_loss
    texts = ["a red square in the top on a white background", "a blue disc , left , navy background", "",
             "a green triangle moves left slowly", "a small box in the center"]
    idx, twins = joint.confused_twins(texts)
    assert idx == [0, 1, 4]
    assert twins == ["a red circle in the top on a white background", "a blue box , left , navy background",
                     "a small disc in the center"]
    parts = joint.load_parts(run["init"])
    tok, encoder = parts["tokenizer"], parts["text_encoder"]
    states = joint.encode_captions(tok, encoder, [texts[i] for i in idx] + twins)
    d = joint.state_distance(states[:3], states[3:])
    assert (d > 0).all()
    assert torch.allclose(joint.word_margin_loss(tok, encoder, texts, 10.0), (10.0 - d).mean())
    assert joint.word_margin_loss(tok, encoder, texts, 0.0) == 0                 # apart enough: no term
    assert joint.word_margin_loss(tok, encoder, ["a red triangle"], 10.0) == 0   # no square or circle named

    def step_loss(**kw):
        stage = joint.joint_stage(run["dir"], "frames", run["init"], monitor_every=0, batch=6, **kw)
        return stage, stage.loss_fn(3)
    _, plain = step_loss()
    seen = []
    monkeypatch.setattr(joint, "word_margin_loss", lambda *a: seen.append(a) or margin_loss(*a))
    stage, with_margin = step_loss(word_margin=10.0, word_margin_weight=0.5)
    (_, _, step_texts, margin), = seen
    assert len(step_texts) == 6 and margin == 10.0                        # the step's own frames' captions
    extra = 0.5 * margin_loss(tok, stage.model.encoder, step_texts, 10.0)
    assert extra > 0 and torch.allclose(with_margin - plain, extra)       # added, weighted
    stage.model.zero_grad()
    extra.backward()
    assert all(p.grad is None or not p.grad.any() for p in stage.model.transformer.parameters())
    assert any(p.grad is not None and p.grad.any() for p in stage.model.encoder.parameters())
    with pytest.raises(ValueError, match="word_margin=-0.1 must be >= 0"):
        joint.joint_stage(run["dir"], "frames", run["init"], word_margin=-0.1)


def test_the_decoders_corner_weight_marks_where_a_square_and_a_circle_differ_in_pixels(run):
    from vidlab.training import wan_vae
    from vidlab.world.shapes import Scene, shape_mask
    scenes = [Scene(shape, "red", "white", "center", "large") for shape in ("square", "circle", "triangle")]
    marked = wan_vae.corner_pixels(scenes)
    assert marked.shape == (3, 1, 64, 64) and not marked[2].any()          # a triangle: nothing marked
    square, circle = (torch.from_numpy(shape_mask(s.shape, *s.resolved_center(), s.radius, 64, 64)) > 0.5
                      for s in scenes[:2])
    differ = square ^ circle
    assert marked[0, 0][differ].float().mean() > 0.9 and torch.equal(marked[0], marked[1])  # the same cells
    near = torch.nn.functional.max_pool2d(differ[None].float(), 3, stride=1, padding=1)[0].bool()
    assert not (marked[0, 0].bool() & ~near).any()                             # within a pixel of where they differ
    cx, cy = (round(v) for v in scenes[0].resolved_center())
    assert not marked[0, 0, cy - 3:cy + 3, cx - 3:cx + 3].any()                # the subject's middle is not marked

    vae_dir = run["init"] + "/vae"
    losses = [wan_vae.decoder_stage(vae_dir, batch=8, corner_weight=w).loss_fn(0) for w in (1.0, 30.0)]
    assert losses[1] > losses[0]
    with pytest.raises(ValueError, match="corner_weight=0.5 must be >= 1"):
        wan_vae.decoder_stage(vae_dir, corner_weight=0.5)


def test_square_margin_reads_squares_only_and_swaps_the_sampler_it_is_asked_for(run):
    import sys
    from pathlib import Path

    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from square_margin import margins, square_scenes, summary, use_sampler

    from vidlab.world.shapes import render_batch
    scenes = square_scenes(12, "train", 3)
    assert len(scenes) == 12 and all(s.shape == "square" for s in scenes) and scenes == square_scenes(12, "train", 3)
    margin, read = margins(render_batch(scenes))
    assert all(m > 0 for m in margin) and all(read)     # a clean render is read as a square, by a margin
    numbers = summary(margin + [float("nan"), -0.02], read + [False, False])
    assert numbers["n"] == 14 and numbers["no_subject"] == 1 / 14 and numbers["just_round"] == 1 / 14
    pipe = WanPipeline.from_pretrained(run["init"])
    own = type(pipe.scheduler)
    use_sampler(pipe, "model", None)
    assert type(pipe.scheduler) is own
    use_sampler(pipe, "euler-stochastic", 4.0)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) and pipe.scheduler.config.stochastic_sampling
    assert pipe.scheduler.config.shift == 4.0
    with pytest.raises(ValueError, match=r"sampler='heun' is not one of"):
        use_sampler(pipe, "heun", None)
    with pytest.raises(ValueError, match="flow_shift=0.0 must be > 0"):
        use_sampler(pipe, "euler", 0.0)


def test_the_square_memorisation_probe_keeps_only_square_scenes_at_their_cached_centres(run, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from probe_square_memorise import square_subset

    from vidlab.world.shapes import SHAPES
    frames = load_file(run["dir"] / "frames.safetensors")
    shapes = torch.full((len(frames["attrs"]),), SHAPES.index("circle"))
    shapes[[3, 5, 9]] = SHAPES.index("square")
    data = run_with_shapes(run, tmp_path / "data", shapes)
    scenes = square_subset(data, tmp_path / "probe", 2)
    kept = load_file(tmp_path / "probe" / "frames.safetensors")
    assert torch.equal(kept["mean"], frames["mean"][[3, 5]]) and (kept["attrs"][:, 0] == SHAPES.index("square")).all()
    assert [s.center for s in scenes] == [tuple(c) for c in frames["centre"][[3, 5]].tolist()]
    assert all(s.shape == "square" for s in scenes)
    with pytest.raises(ValueError, match="n=4: the frame cache in .* has only 3 square scenes"):
        square_subset(data, tmp_path / "probe4", 4)
