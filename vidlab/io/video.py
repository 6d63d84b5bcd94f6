"""Video files in and out: MP4 (H.264) and PNG frame folders, plus inline notebook display.

Frames everywhere in vidlab are a float tensor (F, C, H, W), C=3, values in [0, 1].
MP4 encoding and decoding pipe raw RGB through the ffmpeg binary that imageio-ffmpeg
ships, so no system ffmpeg is needed.

>>> frames = torch.rand(8, 3, 64, 64)
>>> path = write_mp4(frames, "clip.mp4", fps=24)
>>> frames_back, fps = read_mp4(path)
>>> frames_back.shape, fps
(torch.Size([8, 3, 64, 64]), 24.0)
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import torch

from .atomic import atomic_output

FPS_RANGE = (15, 60)  # inclusive; integer frame rates only
DEFAULT_FPS = 24  # used by display_video when it is given frames and no fps
DEFAULT_CRF = 12  # libx264 quality, 0 (lossless) .. 51; low because our frames are tiny
CRF_RANGE = (0, 51)
PRESET = "medium"  # libx264 speed/size trade-off; the size is irrelevant at 64x64
AUDIO_BITRATE = "192k"
PNG_MIN_DIGITS = 5  # frame_00000.png

# The original size of an odd-sized video, stored in the MP4 `comment` tag (see write_mp4).
_SIZE_TAG = "vidlab_size"
# Decoding yuv420p -> rgb: bicubic chroma upsampling with exact rounding gains ~2 dB PSNR over
# ffmpeg's default on coloured edges (measured: 36.3 -> 38.5 dB at crf 12). On the encode side
# the same flags changed nothing measurable, so encoding keeps ffmpeg's default.
_DECODE_SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int"


# -----------------------------------------------------------------------------
# tensor <-> uint8

def _check_frames(frames: torch.Tensor, name: str = "frames") -> None:
    """Raise ValueError unless `frames` is a float tensor (F, 3, H, W) with values in [0, 1]."""
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (F, 3, H, W), "
                         f"received {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[1] != 3 or min(frames.shape) == 0:
        raise ValueError(f"{name} must have shape (F, 3, H, W) with F, H, W >= 1, "
                         f"received shape {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], "
                         f"received dtype {frames.dtype}")
    lo, hi = frames.min().item(), frames.max().item()
    if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{name} values must lie in [0, 1], received min {lo:.4g}, max {hi:.4g}")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames (F, 3, H, W) in [0, 1] -> uint8 array (F, H, W, 3), rounded to nearest.

    >>> to_uint8(torch.ones(2, 3, 4, 4)).shape, int(to_uint8(torch.ones(2, 3, 4, 4)).max())
    ((2, 4, 4, 3), 255)
    """
    _check_frames(frames)
    frames = frames.detach().to("cpu", torch.float32)
    array = (frames * 255.0).round().to(torch.uint8)  # (F, 3, H, W)
    return array.permute(0, 2, 3, 1).contiguous().numpy()  # (F, H, W, 3)


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 array (F, H, W, 3) -> float32 frames (F, 3, H, W) in [0, 1]; exact inverse of to_uint8.

    >>> from_uint8(np.full((2, 4, 4, 3), 255, np.uint8)).shape
    torch.Size([2, 3, 4, 4])
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"array must have dtype uint8, received {array.dtype}")
    if array.ndim != 4 or array.shape[3] != 3 or min(array.shape) == 0:
        raise ValueError(f"array must have shape (F, H, W, 3) with F, H, W >= 1, "
                         f"received shape {array.shape}")
    frames = torch.tensor(array).permute(0, 3, 1, 2)  # copy (input may be read-only); (F, 3, H, W)
    return frames.to(torch.float32) / 255.0


# -----------------------------------------------------------------------------
# MP4

def _check_fps(fps) -> int:
    """Return `fps` as an int, or raise ValueError naming the field, the value and the allowed range."""
    lo, hi = FPS_RANGE
    ok = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
    if not ok or not float(fps).is_integer() or not lo <= fps <= hi:
        raise ValueError(f"fps={fps!r} is not allowed: fps must be an integer in [{lo}, {hi}]")
    return int(fps)


def _run_ffmpeg(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the bundled ffmpeg; on failure raise RuntimeError with the tail of its log."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    result = subprocess.run(cmd, input=stdin, capture_output=True)
    if result.returncode != 0:
        log = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"ffmpeg failed (exit {result.returncode}): " + "\n".join(log[-15:]))
    return result


def write_mp4(frames: torch.Tensor, path: str | os.PathLike, fps: int,
              audio: str | os.PathLike | None = None, crf: int = DEFAULT_CRF) -> Path:
    """Encode frames (F, 3, H, W) in [0, 1] to an H.264 MP4 (yuv420p) at an integer fps in 15..60.

    yuv420p needs an even width and height. An odd size is padded by one replicated
    row (bottom) and/or column (right), never resized, and the original size is stored in
    the MP4 comment tag; read_mp4 crops the padding away, so no pixel is lost or invented.
    `audio` (any file ffmpeg reads) is muxed in as an AAC stream and the file ends with the
    shorter of the two streams. The write is atomic: a temp file in the same folder,
    then os.replace. Returns the path.

    >>> write_mp4(torch.rand(8, 3, 64, 64), "clip.mp4", fps=30)
    PosixPath('clip.mp4')
    """
    # 1. check inputs
    _check_frames(frames)
    fps = _check_fps(fps)
    lo, hi = CRF_RANGE
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not lo <= crf <= hi:
        raise ValueError(f"crf={crf!r} is not allowed: crf must be an integer in [{lo}, {hi}]")
    if audio is not None and not Path(audio).is_file():
        raise FileNotFoundError(f"audio={str(audio)!r} is not a file")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    # 2. quantize and pad to even size by edge replication
    array = to_uint8(frames)  # (F, H, W, 3)
    height, width = array.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    array = np.pad(array, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")  # (F, H', W', 3)

    # 3. build the ffmpeg command: raw RGB on stdin (+ audio file) -> H.264 (+ AAC) in MP4
    args = ["-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{array.shape[2]}x{array.shape[1]}",
            "-framerate", str(fps), "-i", "pipe:0"]
    if audio is not None:
        args += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0",
                 "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-shortest"]
    args += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(int(crf)),
             "-pix_fmt", "yuv420p", "-r", str(fps),
             "-movflags", "+faststart"]
    if pad_h or pad_w:
        args += ["-metadata", f"comment={_SIZE_TAG}={width}x{height}"]

    # 4. encode to a temp file next to `path`, then atomically replace (ffmpeg creates the file itself)
    with atomic_output(path) as tmp:
        _run_ffmpeg(args + ["-f", "mp4", str(tmp)], stdin=array.tobytes())
    return path


def _parse_header(log: str) -> dict:
    """Read fps, decoded size and the vidlab size tag from the `Input #0` part of an ffmpeg log."""
    log = log.split("Output #0")[0]
    video = re.search(r"Stream #0:\d+.*?: Video: (.*)", log)
    if video is None:
        return {"size": None, "fps": None, "original_size": None}
    size = re.search(r", (\d+)x(\d+)[ ,\n]", video.group(1) + "\n")
    fps = re.search(r", ([\d.]+)(k?) fps", video.group(1))
    tag = re.search(rf"^\s*comment\s*:\s*{_SIZE_TAG}=(\d+)x(\d+)\s*$", log, re.MULTILINE)
    return {
        "size": (int(size.group(1)), int(size.group(2))) if size else None,  # (W, H)
        "fps": float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
        "original_size": (int(tag.group(1)), int(tag.group(2))) if tag else None,  # (W, H)
    }


def read_mp4(path: str | os.PathLike) -> tuple[torch.Tensor, float]:
    """Decode a video file to (frames (F, 3, H, W) float32 in [0, 1], fps).

    Every decoded frame is returned once (no frame-rate conversion). Padding added by
    write_mp4 to an odd size is cropped away.

    >>> frames, fps = read_mp4("clip.mp4")
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file")

    # 1. decode every frame to raw RGB on stdout; the header on stderr gives size and fps
    result = _run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                          "-sws_flags", _DECODE_SWS_FLAGS,
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
    header = _parse_header(result.stderr.decode(errors="replace"))
    if header["size"] is None or header["fps"] is None:
        raise RuntimeError(f"could not read a video stream's size and fps in {path} from the ffmpeg log")

    # 2. bytes -> (F, H, W, 3), crop write_mp4's padding, -> (F, 3, H, W)
    width, height = header["size"]
    data = np.frombuffer(result.stdout, np.uint8)
    if data.size == 0 or data.size % (height * width * 3):
        raise RuntimeError(f"decoded {data.size} bytes from {path}, "
                           f"not a whole number of {width}x{height} RGB frames")
    array = data.reshape(-1, height, width, 3)  # (F, H, W, 3)
    if header["original_size"] is not None:
        width, height = header["original_size"]
        array = array[:, :height, :width]
    return from_uint8(array), header["fps"]


# -----------------------------------------------------------------------------
# PNG frame folders

def save_png_frames(frames: torch.Tensor, directory: str | os.PathLike,
                    prefix: str = "frame_") -> list[Path]:
    """Write frames (F, 3, H, W) as lossless 8-bit PNGs `{prefix}{i:05d}.png`; returns the paths.

    The index has max(5, digits of F-1) digits, so names sort in frame order. The folder
    is created if needed; files of the same names are overwritten.

    >>> save_png_frames(torch.rand(3, 3, 64, 64), "frames")[0].name
    'frame_00000.png'
    """
    array = to_uint8(frames)  # (F, H, W, 3) RGB
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digits = max(PNG_MIN_DIGITS, len(str(len(array) - 1)))
    paths = []
    for i, image in enumerate(array):
        path = directory / f"{prefix}{i:0{digits}d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"could not write {path}")
        paths.append(path)
    return paths


def _natural_key(path: Path) -> list:
    """Sort key that orders frame_9 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def load_png_frames(directory: str | os.PathLike, pattern: str = "frame_*.png") -> torch.Tensor:
    """Read the images in `directory` matching `pattern`, in natural name order, as (F, 3, H, W).

    >>> load_png_frames("frames").shape  # doctest: +SKIP
    torch.Size([3, 3, 64, 64])
    """
    directory = Path(directory)
    paths = sorted(directory.glob(pattern), key=_natural_key)
    if not paths:
        raise FileNotFoundError(f"no files match pattern={pattern!r} in directory={str(directory)!r}")
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (H, W, 3) BGR uint8
        if image is None:
            raise ValueError(f"could not read {path} as an image")
        if images and image.shape != images[0].shape:
            raise ValueError(f"{path.name} has size {image.shape[:2]}, "
                             f"expected {images[0].shape[:2]} like {paths[0].name}")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return from_uint8(np.stack(images))  # (F, 3, H, W)


def load_image(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> torch.Tensor:
    """One image file (PNG, JPEG, ...) as (3, H, W) float in [0, 1], resized to width x height when given.

    >>> load_image("first.png", 64, 64).shape  # doctest: +SKIP
    torch.Size([3, 64, 64])
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"image {str(path)!r} is not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (H, W, 3) BGR uint8
    if image is None:
        raise ValueError(f"could not read {str(path)!r} as an image (PNG, JPEG, BMP, TIFF or WebP)")
    if width is not None and height is not None and image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return from_uint8(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None])[0]


# -----------------------------------------------------------------------------
# notebook display

def display_video(frames_or_path: torch.Tensor | str | os.PathLike, fps: int | None = None,
                  width: int = 256):
    """An IPython HTML <video> with the MP4 embedded as a base64 data URI (survives in saved notebooks).

    Given frames (F, 3, H, W), encodes them first at `fps` (default 24); given a path,
    embeds that file as is and `fps` must be None.

    >>> display_video(torch.rand(8, 3, 64, 64), fps=24)  # as the last line of a cell, shows the video
    <IPython.core.display.HTML object>
    """
    from IPython.display import HTML  # lazy: only notebooks need IPython

    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r} is not allowed: width must be a positive integer (pixels)")
    if isinstance(frames_or_path, torch.Tensor):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_mp4(frames_or_path, Path(tmp) / "video.mp4",
                             fps=DEFAULT_FPS if fps is None else fps)
            data = path.read_bytes()
    else:
        if fps is not None:
            raise ValueError(f"fps={fps!r} is only used with frames; a file keeps its own fps, pass fps=None")
        path = Path(frames_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"frames_or_path={str(path)!r} is not a file")
        data = path.read_bytes()
    uri = "data:video/mp4;base64," + base64.b64encode(data).decode("ascii")
    return HTML(f'<video width="{width}" controls autoplay loop muted playsinline '
                f'style="image-rendering: pixelated"><source src="{uri}" type="video/mp4"></video>')
