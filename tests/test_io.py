"""Tests for vidlab.io: MP4 and PNG round trips, validation errors, audio muxing, notebook display.

Videos are tiny (8-12 frames of 64x64) so the whole file runs in a few seconds.
"""
import base64
import re
import subprocess
import wave

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from vidlab.io import (display_video, from_uint8, load_png_frames, read_mp4, save_png_frames,
                       to_uint8, write_mp4)

# Round-trip bound for the moving disc below at the default crf (12). Measured 38.45 dB:
# H.264 at crf 12 is near-transparent, almost all of the loss is yuv420p halving the chroma
# resolution at the red/beige edge (crf 0 still gives only 39.3 dB). 35 dB leaves ~3.5 dB
# for other ffmpeg/x264 builds while still failing on a wrong colour matrix, a frame shift
# or a swapped channel order (each of which drops PSNR far below 30 dB).
MIN_ROUND_TRIP_PSNR_DB = 35.0


def moving_disc(num_frames=12, height=64, width=64) -> torch.Tensor:
    """A red anti-aliased disc moving across a beige background: (F, 3, H, W) in [0, 1]."""
    array = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        big = np.full((height * 4, width * 4, 3), (225, 210, 165), np.uint8)  # draw at 4x
        cx = 14 + (width - 28) * t / max(num_frames - 1, 1)
        cy = height / 2 + 10 * np.sin(t / 2)
        cv2.circle(big, (int(cx * 4), int(cy * 4)), 40, (220, 30, 30), -1, lineType=cv2.LINE_AA)
        array[t] = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two frame tensors in [0, 1], computed on 8-bit values with numpy."""
    a = np.round(a.numpy().astype(np.float64) * 255.0)
    b = np.round(b.numpy().astype(np.float64) * 255.0)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ffmpeg_streams(path) -> str:
    """The stream lines `ffmpeg -i` prints for a file: an independent check of what is in it."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)  # exits 1 (no output file); fine
    return "\n".join(line for line in result.stderr.splitlines() if "Stream #" in line)


def write_sine_wav(path, seconds=1.0, rate=16000, hz=440.0):
    """A mono 16-bit sine WAV written with the stdlib `wave` module."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def disc():
    return moving_disc()


# -----------------------------------------------------------------------------
# MP4 round trip

@pytest.mark.parametrize("fps", [15, 24, 30, 60])
def test_mp4_round_trip_keeps_frame_count_fps_and_quality(tmp_path, disc, fps):
    path = write_mp4(disc, tmp_path / "clip.mp4", fps=fps)
    frames, fps_back = read_mp4(path)
    assert frames.shape == disc.shape
    assert frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert fps_back == float(fps)
    assert psnr_db(disc, frames) >= MIN_ROUND_TRIP_PSNR_DB
    streams = ffmpeg_streams(path)
    assert re.search(r"Video: h264 .*yuv420p", streams), streams
    assert f" {fps} fps" in streams


def test_mp4_frames_stay_in_order(tmp_path, disc):
    # each decoded frame is closest to its own source frame: no shift, drop or duplicate
    frames, _ = read_mp4(write_mp4(disc, tmp_path / "clip.mp4", fps=24))
    for i, frame in enumerate(frames):
        errors = [float(((frame - source) ** 2).mean()) for source in disc]
        assert int(np.argmin(errors)) == i


def test_odd_size_is_padded_in_file_and_cropped_on_read(tmp_path, disc):
    odd = disc[:8, :, :45, :63].contiguous()  # (8, 3, 45, 63)
    path = write_mp4(odd, tmp_path / "odd.mp4", fps=24)
    assert ", 64x46" in ffmpeg_streams(path)  # padded by one replicated row and column
    frames, _ = read_mp4(path)
    assert frames.shape == (8, 3, 45, 63)
    assert psnr_db(odd, frames) >= MIN_ROUND_TRIP_PSNR_DB


def test_write_is_atomic(tmp_path, disc):
    path = write_mp4(disc, tmp_path / "clip.mp4", fps=24)
    before = path.read_bytes()
    not_audio = tmp_path / "not_audio.wav"
    not_audio.write_text("this is not a wav file")
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        write_mp4(disc, path, fps=24, audio=not_audio)
    assert path.read_bytes() == before  # a failed write leaves the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "not_audio.wav"]  # no temp


def test_audio_is_muxed_as_aac_and_video_is_kept(tmp_path, disc):
    wav = write_sine_wav(tmp_path / "sine.wav", seconds=1.0)  # longer than 12 frames at 24 fps
    path = write_mp4(disc, tmp_path / "with_audio.mp4", fps=24, audio=wav)
    streams = ffmpeg_streams(path)
    assert "Audio: aac" in streams, streams
    assert "Video: h264" in streams
    frames, fps = read_mp4(path)
    assert frames.shape == disc.shape and fps == 24.0
    assert "Audio" not in ffmpeg_streams(write_mp4(disc, tmp_path / "silent.mp4", fps=24))


# -----------------------------------------------------------------------------
# validation

@pytest.mark.parametrize("fps", [14, 61, 0, 23.976, "24", True])
def test_bad_fps_raises_naming_field_value_and_range(tmp_path, disc, fps):
    with pytest.raises(ValueError, match=r"fps=.*\[15, 60\]") as error:
        write_mp4(disc, tmp_path / "clip.mp4", fps=fps)
    assert repr(fps) in str(error.value)
    assert not (tmp_path / "clip.mp4").exists()


@pytest.mark.parametrize("shape", [(8, 64, 64, 3), (3, 64, 64), (8, 1, 64, 64), (0, 3, 64, 64)])
def test_bad_shape_raises_with_expected_and_received_shape(tmp_path, shape):
    with pytest.raises(ValueError, match=r"frames must have shape \(F, 3, H, W\)") as error:
        write_mp4(torch.zeros(shape), tmp_path / "clip.mp4", fps=24)
    assert str(shape) in str(error.value)


def test_bad_dtype_and_range_raise(tmp_path, disc):
    with pytest.raises(ValueError, match="dtype torch.uint8"):
        write_mp4((disc * 255).to(torch.uint8), tmp_path / "clip.mp4", fps=24)
    too_bright = disc.clone()
    too_bright[0, 0, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"\[0, 1\], received min 0.1176, max 2$"):
        write_mp4(too_bright, tmp_path / "clip.mp4", fps=24)
    with pytest.raises(ValueError, match="crf=60"):
        write_mp4(disc, tmp_path / "clip.mp4", fps=24, crf=60)
    with pytest.raises(FileNotFoundError, match="audio="):
        write_mp4(disc, tmp_path / "clip.mp4", fps=24, audio=tmp_path / "missing.wav")


# -----------------------------------------------------------------------------
# uint8 helpers and PNG frames

def test_uint8_helpers_are_exact_inverses():
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    frames = from_uint8(every_value)  # (1, 3, 16, 16)
    assert frames.shape == (1, 3, 16, 16)
    assert frames.min() == 0.0 and frames.max() == 1.0
    np.testing.assert_array_equal(to_uint8(frames), every_value)
    assert to_uint8(torch.full((1, 3, 2, 2), 0.5))[0, 0, 0, 0] == 128  # rounds, not truncates
    with pytest.raises(ValueError, match="dtype uint8"):
        from_uint8(every_value.astype(np.float32))


def test_png_frames_names_and_lossless_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(12, 20, 30, 3), dtype=np.uint8)  # (F, H, W, 3)
    array[:, 0, 0] = (255, 0, 0)  # a pure red pixel pins the channel order
    frames = from_uint8(array)
    paths = save_png_frames(frames, tmp_path / "pngs")
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(12)]
    assert all(p.is_file() for p in paths)
    assert tuple(cv2.imread(str(paths[0]))[0, 0]) == (0, 0, 255)  # BGR on disk = red
    loaded = load_png_frames(tmp_path / "pngs")
    assert torch.equal(loaded, frames)  # exact after uint8 quantization
    np.testing.assert_array_equal(to_uint8(loaded), array)


def test_png_prefix_pattern_and_missing(tmp_path):
    save_png_frames(torch.rand(3, 3, 8, 8), tmp_path, prefix="a_")
    save_png_frames(torch.zeros(2, 3, 8, 8), tmp_path, prefix="b_")
    assert sorted(p.name for p in tmp_path.iterdir())[:3] == ["a_00000.png", "a_00001.png", "a_00002.png"]
    assert load_png_frames(tmp_path, pattern="a_*.png").shape == (3, 3, 8, 8)
    assert load_png_frames(tmp_path, pattern="b_*.png").sum() == 0
    with pytest.raises(FileNotFoundError, match="pattern='frame_\\*.png'"):
        load_png_frames(tmp_path)


# -----------------------------------------------------------------------------
# notebook display

def _embedded_mp4(html: str) -> bytes:
    match = re.search(r'src="data:video/mp4;base64,([A-Za-z0-9+/=]+)"', html)
    assert match, html[:200]
    return base64.b64decode(match.group(1))


def test_display_video_embeds_frames_as_base64_mp4(tmp_path, disc):
    html = display_video(disc[:8], fps=30, width=128)._repr_html_()
    assert "data:video/mp4;base64," in html
    assert 'width="128"' in html
    path = tmp_path / "embedded.mp4"
    path.write_bytes(_embedded_mp4(html))
    frames, fps = read_mp4(path)
    assert frames.shape == (8, 3, 64, 64) and fps == 30.0


def test_display_video_embeds_a_file_unchanged(tmp_path, disc):
    path = write_mp4(disc[:8], tmp_path / "clip.mp4", fps=15)
    html = display_video(path)._repr_html_()
    assert _embedded_mp4(html) == path.read_bytes()
    with pytest.raises(ValueError, match="fps=24"):
        display_video(path, fps=24)
