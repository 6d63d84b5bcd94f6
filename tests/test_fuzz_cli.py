"""Seeded fuzzing of the command line as a user meets it: 200 mutated sweep specs (`vidlab sweep --check`)
and 80 mutated request files (`vidlab generate --check`). Each must end within 5 s in a valid check (exit 0)
or one clean error (exit 2, one line on stderr, no traceback); the tally is printed."""
import json
import random
import signal
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import pytest

import vidlab.generate  # noqa: F401 - imported once here, so no case pays for loading torch and diffusers
from vidlab.cli import main as cli_main

SPEC = """name: fuzz
base_request: {prompt: "a red circle in the center on a white background", duration: 1, fps: 16}
strategy: frame_chain
options: {mode: controlnet}
axes:
  seed: [0, 1, 2]
  options.controlnet_conditioning_scale: [0.5, 1.0]
max_retries: 1
"""
REQUEST = {"prompt": "a red circle in the center on a white background", "duration": 1, "fps": 16, "seed": 3,
           "resolution": "64p", "num_inference_steps": 2, "guidance_scale": 3.0}
JUNK = ["abc", "1e400", ".nan", "-1", "9" * 5000, "[" * 3000 + "]" * 3000, "true", "null", "{}", "[]", "1.0", "'1'",
        "0x10", "!!python/object/apply:os.system ['true']", "&a [*a]", "[1, 1.0, '1']", "[true, 1]", "-.inf",
        "\t", "{a: {b: {c: [1, [2, [3]]]}}}", "'" + "é" * 50 + "'", "[" + ", ".join(map(str, range(300))) + "]"]
JSON_JUNK = ["abc", 1e308, -1, 10 ** 30, None, True, [], {}, [[[[[]]]]], "1" * 3000, "4096x4096", "0x0", 0, 0.5, 61,
             {"subject": "x"}, [{"time": 0.5, "prompt": "y"}], "64p", "nan"]
TALLY = {"specs": 0, "requests": 0, "clean errors": 0, "valid": 0, "tracebacks": 0, "hangs": 0}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_case(argv) -> None:
    """Run the CLI in this process; count the outcome; fail on a traceback or a hang."""
    err, out = StringIO(), StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = cli_main(argv)
    except Hang:
        TALLY["hangs"] += 1
        pytest.fail(f"no answer within 5 s: {argv}: {open(argv[1], errors='replace').read()[:300]!r}")
    except BaseException as exc:  # noqa: BLE001 - anything escaping the CLI is a traceback to the user
        TALLY["tracebacks"] += 1
        raise AssertionError(f"{type(exc).__name__} escaped the CLI for {argv}") from exc
    finally:
        signal.alarm(0)
    text = err.getvalue().strip()
    if code == 0:
        TALLY["valid"] += 1
        return
    assert code == 2 and len(text.splitlines()) == 1 and "Traceback" not in text, (code, text)
    TALLY["clean errors"] += 1


def mutate_spec(rng: random.Random) -> str:
    lines = SPEC.splitlines()
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0 and ":" in lines[k]:  # a value replaced by junk
            key = lines[k].split(":", 1)[0]
            lines[k] = f"{key}: {rng.choice(JUNK)}"
        elif op == 1:  # a line twice (a key given twice)
            lines.insert(k, lines[k])
        elif op == 2 and len(lines) > 1:
            del lines[k]
        elif op == 3:  # an axis added
            axis = rng.choice(["seed", "fps", "guidance_scale", "options.strength", "options.nope", "nope", "options."])
            lines.append(f"  {axis}: {rng.choice(JUNK)}")
        elif op == 4:  # a key misspelt
            lines[k] = lines[k].replace("a", "e", 1)
        else:  # a character inserted
            pos = rng.randrange(len(lines[k]) + 1)
            lines[k] = lines[k][:pos] + rng.choice(["'", '"', ":", "[", "{", "#", "-", " ", "\\", "%"]) + lines[k][pos:]
    text = "\n".join(lines) + "\n"
    return text[:rng.randrange(len(text))] if rng.random() < 0.1 else text


def mutate_request(rng: random.Random) -> str:
    data = dict(REQUEST)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        if op == 0:
            data[rng.choice(list(REQUEST))] = rng.choice(JSON_JUNK)
        elif op == 1 and data:
            del data[rng.choice(list(data))]
        elif op == 2:
            data[rng.choice(["unknown", "Prompt", "seeds"])] = rng.choice(JSON_JUNK)
        else:
            data["seed"] = rng.choice([-1, 0, 2 ** 32 - 1, 2 ** 32, 2 ** 64])
    text = json.dumps(data)
    return text[:rng.randrange(len(text))] if rng.random() < 0.1 else text


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\nCLI fuzz: {TALLY['specs']} sweep specs and {TALLY['requests']} requests -> {TALLY['clean errors']} clean "
          f"errors, {TALLY['valid']} valid, {TALLY['tracebacks']} tracebacks, {TALLY['hangs']} hangs")


def test_mutated_sweep_specs_end_in_a_valid_check_or_one_clean_line(tmp_path):
    rng = random.Random(29)
    path = tmp_path / "spec.yaml"
    for _ in range(200):
        path.write_text(mutate_spec(rng))
        TALLY["specs"] += 1
        run_case(["sweep", str(path), "--store", str(tmp_path / "store"), "--check"])
    assert TALLY["clean errors"] > 50 and TALLY["valid"] > 5  # the mutations reach both ends


def test_mutated_requests_end_in_a_valid_check_or_one_clean_line(tmp_path):
    rng = random.Random(30)
    path = tmp_path / "request.json"
    before = dict(TALLY)
    for _ in range(80):
        path.write_text(mutate_request(rng))
        TALLY["requests"] += 1
        opts = rng.choice([[], ["-o", "strength=0.5"], ["-o", "strength=2"], ["-o", "bogus=1"], ["--strategy", "native"]])
        run_case(["generate", str(path), "--out", str(tmp_path / "o"), "--check", *opts])
    assert TALLY["clean errors"] - before["clean errors"] > 20 and TALLY["valid"] - before["valid"] > 5
