"""Fuzzing every request field and the sweep YAML (hypothesis): any input parses or raises the
project's own RequestError naming field, value and what is allowed, never an error from inside
pydantic, torch or yaml. The counts printed are the figures of the reliability report."""
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidlab.config import GenerationRequest, RequestError, check_budget, parse_request
from vidlab.sweeps.spec import SweepSpec, expand_grid, load_sweep_spec

EXAMPLES = 300
FIELDS = list(GenerationRequest.model_fields)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
# near-valid values per field, so the fuzzer also reaches the checks behind the type checks
near_valid = {
    "prompt": st.text(max_size=60) | st.fixed_dictionaries({"subject": st.text(max_size=10)}),
    "duration": st.floats(-1, 400), "fps": st.integers(0, 100), "resolution": st.from_regex(r"\d{1,5}x\d{1,5}|\d+p"),
    "seed": st.integers(-5, 2**33), "motion_intensity": st.floats(0, 2), "temporal_consistency": st.floats(0.5, 1.2),
    "color_palette": st.sampled_from(["warm", "cool", "neutral", "hot", ""]),
    "camera_motion": st.sampled_from(["static", "pan", "zoom", "tilt"]), "num_inference_steps": st.integers(-1, 600),
    "guidance_scale": st.floats(-1, 60),
    "keyframes": st.lists(st.fixed_dictionaries({"time": st.floats(-1, 400), "prompt": st.text(max_size=10)}),
                          max_size=3),
}
requests = st.dictionaries(st.sampled_from(FIELDS + ["unknown_field"]),
                           json_values | st.one_of(*near_valid.values()), max_size=6)
requests_near = st.fixed_dictionaries({}, optional={k: v for k, v in near_valid.items()})
counts = {"requests": 0, "parsed": 0, "refused": 0, "yaml": 0}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print(f"\nfuzzed {counts['requests']} requests ({counts['parsed']} parsed, {counts['refused']} refused with "
          f"RequestError) and {counts['yaml']} sweep YAML files")


def check_error(err: RequestError, data: dict) -> None:
    assert err.problems, "a RequestError names at least one problem"
    for field, value, allowed in err.problems:
        assert isinstance(field, str) and field and isinstance(allowed, str) and allowed
        top = field.split(".")[0]
        assert top in FIELDS or top in data or top.startswith("(") or top == "unknown_field", field
        assert field in str(err) and allowed in str(err)


def _parse(data):
    counts["requests"] += 1
    try:
        request = parse_request(data)
    except RequestError as err:
        counts["refused"] += 1
        check_error(err, data)
        return
    counts["parsed"] += 1
    assert request.num_frames >= 1 and math.isfinite(request.duration) and request.width % 8 == 0
    check_budget(request, None)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_any_request_parses_or_raises_request_error(data):
    _parse(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests_near.map(lambda d: {"prompt": "a red circle", **d}))
def test_near_valid_requests_parse_or_raise_request_error(data):
    _parse(data)


spec_dicts = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | st.just("sweep"), "base_request": requests_near.map(lambda d: {"prompt": "x", **d}),
     "strategy": st.sampled_from(["frame_chain", "native", "??"])},
    optional={"axes": st.dictionaries(st.sampled_from(FIELDS + ["options.strength", "options.", "nope"]),
                                      st.lists(json_values, max_size=3), max_size=2),
              "options": st.dictionaries(st.text(max_size=6), json_values, max_size=2),
              "max_retries": json_values, "max_attempts": json_values, "model": json_values})


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
@given(spec_dicts | st.text(max_size=80).map(lambda t: {"__raw__": t}))
def test_any_sweep_yaml_loads_or_raises_request_error(tmp_path, data):
    counts["yaml"] += 1
    path = tmp_path / "sweep.yaml"
    path.write_text(data["__raw__"] if "__raw__" in data else yaml.safe_dump(data, allow_unicode=True))
    try:
        spec = load_sweep_spec(path)
        expand_grid(spec)
    except RequestError as err:
        assert err.problems and all(isinstance(f, str) and f for f, _, _ in err.problems)
        return
    assert isinstance(spec, SweepSpec)
