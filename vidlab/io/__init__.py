"""Video in and out: MP4 (H.264) and PNG frame folders, uint8 helpers, inline notebook display."""
from .video import (display_video, from_uint8, load_png_frames, read_mp4, save_png_frames,
                    to_uint8, write_mp4)

__all__ = ["write_mp4", "read_mp4", "save_png_frames", "load_png_frames", "display_video",
           "to_uint8", "from_uint8"]
