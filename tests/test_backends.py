"""Backends: presets, local folders, safetensors only, the LRU cache, the offline error."""
import pytest
import torch

from vidlab.backends import (PRESETS, ModelNotAvailableError, cache_info, clear_cache, default_device_dtype,
                             load_backend, resolve, set_cache_size)


def test_presets_cover_the_spec():
    assert {"shapes-tiny", "sd15-canny", "animatediff", "wan2.2-ti2v-5b"} <= set(PRESETS)
    assert PRESETS["sd15-canny"].controlnet and PRESETS["animatediff"].motion_adapter
    assert PRESETS["wan2.2-ti2v-5b"].family == "wan"
    with pytest.raises(ValueError, match="not a preset"):
        resolve("no-such-model")


def test_device_dtype_defaults_and_overrides():
    assert default_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert default_device_dtype("cpu", "bf16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="dtype='fp8'"):
        default_device_dtype("cpu", "fp8")


def test_real_presets_load_tiny_components_and_cache(tiny_sd):
    clear_cache()
    backend = load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    assert backend.preset.name == "sd15-canny" and "controlnet" in backend.components
    assert set(backend.kinds) == {"text2img", "img2img", "controlnet", "controlnet_img2img"}
    assert backend.pipeline("controlnet").controlnet is backend.components["controlnet"]
    # the img2img pipeline shares the very same UNet: no second copy of the weights
    assert backend.pipeline("img2img").unet is backend.pipeline("text2img").unet
    again = load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
    assert again is backend
    assert cache_info()["misses"] == 1 and cache_info()["hits"] == 1
    anim = load_backend("animatediff", base=tiny_sd["base"], motion_adapter=tiny_sd["motion_adapter"])
    assert "animatediff" in anim.kinds and len(backend.weights_hash) == 16
    assert anim.weights_hash != backend.weights_hash


def test_lru_evicts_oldest(tiny_sd):
    clear_cache()
    set_cache_size(1)
    try:
        a = load_backend(tiny_sd["base"])
        load_backend("sd15-canny", base=tiny_sd["base"], controlnet=tiny_sd["controlnet"])
        assert cache_info()["size"] == 1
        assert load_backend(tiny_sd["base"]) is not a  # evicted, loaded again
        assert cache_info()["misses"] == 3
    finally:
        set_cache_size(2)


def test_unknown_pipeline_kind_is_a_clear_error(tiny_sd):
    backend = load_backend(tiny_sd["base"])
    with pytest.raises(ValueError, match="allowed: \\['text2img', 'img2img'\\]"):
        backend.pipeline("controlnet")


def test_offline_hub_id_error_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    clear_cache()
    with pytest.raises(ModelNotAvailableError) as err:
        load_backend("sd15-canny")
    text = str(err.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in text and "not in the local Hugging Face cache" in text
    assert "base='/path/to/folder'" in text and "shapes-tiny" in text
