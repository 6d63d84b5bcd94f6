"""GenerationRequest: bounds, unknown fields, one error naming every bad field, the generated schema."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidlab.cli import main as cli_main
from vidlab.config import GenerationRequest, RequestError, StructuredPrompt, parse_request, request_schema

BASE = {"prompt": "a red circle in the center on a white background"}

# field -> (lowest allowed, highest allowed, is the low end exclusive)
NUMERIC_BOUNDS = {
    "fps": (15, 60, False),
    "motion_intensity": (0.1, 1.5, False),
    "temporal_consistency": (0.7, 1.0, False),
    "duration": (0.0, 300.0, True),
    "guidance_scale": (0.0, 50.0, False),
    "num_inference_steps": (1, 500, False),
}


@pytest.mark.parametrize("field", sorted(NUMERIC_BOUNDS))
@settings(max_examples=40, deadline=None)
@given(x=st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_numeric_ranges(field, x):
    low, high, exclusive = NUMERIC_BOUNDS[field]
    value = int(round(x)) if field in ("fps", "num_inference_steps") else x
    inside = (low < value if exclusive else low <= value) and value <= high
    if inside:
        assert getattr(parse_request({**BASE, field: value}), field) == value
    else:
        with pytest.raises(RequestError) as err:
            parse_request({**BASE, field: value})
        assert field in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("field,value", [("color_palette", "hot"), ("camera_motion", "orbit"), ("prompt", "  "),
                                         ("resolution", "100x64"), ("resolution", "4k"), ("seed", -1)])
def test_bad_values_name_field_value_and_allowed(field, value):
    with pytest.raises(RequestError) as err:
        parse_request({**BASE, field: value})
    text = str(err.value)
    assert field in text and repr(value) in text


def test_one_error_names_every_bad_field():
    with pytest.raises(RequestError) as err:
        parse_request({"prompt": "", "fps": 5, "motion_intensity": 3, "camera_motion": "orbit", "colour": "red"})
    fields = [p[0] for p in err.value.problems]
    assert sorted(fields) == sorted(["prompt", "fps", "motion_intensity", "camera_motion", "colour"])
    assert "allowed: >= 15, <= 60" in str(err.value)
    assert "one of ['static', 'pan', 'zoom']" in str(err.value)


def test_unknown_field_rejected_and_frozen():
    with pytest.raises(RequestError, match="unexpected_field"):
        parse_request({**BASE, "unexpected_field": 1})
    req = parse_request(BASE)
    with pytest.raises(Exception):
        req.fps = 30


@pytest.mark.parametrize("duration,fps,frames", [(1.0, 16, 16), (2.5, 24, 60), (1.03, 15, 15), (0.1, 15, 2),
                                                 (0.01, 15, 1), (1 / 30, 60, 2)])
def test_frame_count_rounds_half_up(duration, fps, frames):
    req = GenerationRequest(**BASE, duration=duration, fps=fps)
    assert req.num_frames == frames == max(1, math.floor(duration * fps + 0.5))


def test_resolution_presets_and_wxh():
    assert (GenerationRequest(**BASE, resolution="512p").width, GenerationRequest(**BASE, resolution="720p").height) \
        == (512, 720)
    req = GenerationRequest(**BASE, resolution="96x64")
    assert (req.width, req.height) == (96, 64)


def test_keyframes_schedule_and_validation():
    req = GenerationRequest(prompt="a red circle", duration=2, fps=15,
                            keyframes=[{"time": 1.0, "prompt": "a red circle , a rainbow appears"}])
    schedule = req.prompt_schedule()
    assert schedule[14] == "a red circle" and schedule[15] == "a red circle , a rainbow appears"
    with pytest.raises(RequestError, match="must be < duration"):
        parse_request({"prompt": "x", "duration": 1, "keyframes": [{"time": 3, "prompt": "y"}]})


def test_structured_prompt_composes_with_style():
    req = GenerationRequest(prompt=StructuredPrompt(subject="panda", action="eating bamboo", scene="bamboo forest",
                                                    style="3D animation"), style="watercolour")
    assert req.full_prompt() == "panda eating bamboo , bamboo forest , 3D animation , watercolour"


def test_schema_has_every_field_with_its_range(capsys):
    schema = request_schema()
    props = schema["properties"]
    assert set(props) == set(GenerationRequest.model_fields)
    assert (props["fps"]["minimum"], props["fps"]["maximum"]) == (15, 60)
    assert (props["motion_intensity"]["minimum"], props["motion_intensity"]["maximum"]) == (0.1, 1.5)
    assert (props["temporal_consistency"]["minimum"], props["temporal_consistency"]["maximum"]) == (0.7, 1.0)
    assert props["duration"]["exclusiveMinimum"] == 0.0
    assert props["color_palette"]["enum"] == ["warm", "cool", "neutral"]
    assert props["camera_motion"]["enum"] == ["static", "pan", "zoom"]
    assert schema["additionalProperties"] is False
    assert cli_main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
