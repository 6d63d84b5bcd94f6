"""The `Video` a generation returns: frames, fps and the record that replays it."""
from __future__ import annotations

import dataclasses
import hashlib
import platform
import resource
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .io.atomic import atomic_output, atomic_write_json


@dataclasses.dataclass
class Video:
    """frames (F, 3, H, W) float in [0, 1]; fps; record: everything needed to replay the run."""

    frames: torch.Tensor
    fps: int
    record: dict

    def __post_init__(self):
        f = self.frames
        if f.ndim != 4 or f.shape[1] != 3:
            raise ValueError(f"Video.frames must have shape (F, 3, H, W), got {tuple(f.shape)}")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    def save(self, path: str | Path) -> Path:
        """Write the MP4 and a JSON manifest (`<name>.json`) beside it; returns the MP4 path.

        The pair is one unit: the manifest carries the MP4's sha256 (`"video": {"file", "sha256",
        "frames_sha256"}`; the last over the float frames, what `vidlab replay` compares),
        the MP4 is encoded to a temporary file first, the manifest is moved into place, then the
        MP4. A process killed between the two moves leaves a manifest that names another video,
        which `read_manifest` refuses; never a pair that silently disagrees.
        """
        from .io import write_mp4

        path = Path(path)
        if path.suffix != ".mp4":
            path = path / "video.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            write_mp4(self.frames, tmp, fps=self.fps)
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
            atomic_write_json(path.with_suffix(".json"), {**self.record, "video": {
                "file": path.name, "sha256": digest, "frames_sha256": frames_digest(self.frames)}})
        return path

    def display(self, width: int = 256):
        """Inline HTML5 video for a notebook."""
        from .io import display_video
        return display_video(self.frames, fps=self.fps, width=width)


def frames_digest(frames: torch.Tensor) -> str:
    """sha256 of the frames as float32 (bit-exact: equal only for the same numbers)."""
    return hashlib.sha256(frames.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


class MismatchedPairError(ValueError):
    """A video's manifest does not describe the MP4 beside it (a write was interrupted between the two)."""


def read_manifest(path: str | Path) -> dict:
    """The manifest (`<name>.json`) of a saved MP4, checked against the MP4's sha256.

    MismatchedPairError when the manifest names another video (an interrupted `save`) or the MP4 is
    missing; a manifest written before the pair carried a sha256 is returned unchecked.
    """
    from .errors import read_json_config
    path = Path(path)
    manifest = read_json_config(path.with_suffix(".json"))
    video = manifest.get("video")
    if video is None:
        return manifest
    if not path.exists():
        raise MismatchedPairError(f"{path.with_suffix('.json')} describes {path.name}, which is missing; "
                                  f"generate it again")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != video.get("sha256"):
        raise MismatchedPairError(f"{path.with_suffix('.json')} describes another video than {path} (sha256 "
                                  f"{str(video.get('sha256'))[:12]}... vs {digest[:12]}...): a save was interrupted; "
                                  f"generate it again")
    return manifest


def library_versions() -> dict:
    import diffusers
    import transformers

    from ._version import __version__
    return {"vidlab": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the vidlab checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@contextmanager
def measured(device: torch.device | str = "cpu"):
    """Wall time and peak memory of a block, written into the yielded dict.

    Peak memory: CUDA -> torch.cuda.max_memory_allocated during the block;
    CPU -> the process's resident-set high-water mark (ru_maxrss) after the block,
    which is a process-wide peak, not the block's alone.
    """
    device = torch.device(device)
    out: dict = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = round(time.perf_counter() - t0, 4)
        if device.type == "cuda":
            out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
            out["peak_memory_kind"] = "cuda max_memory_allocated"
        else:
            out["peak_memory_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            out["peak_memory_kind"] = "process ru_maxrss (high-water mark)"
