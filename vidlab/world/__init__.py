"""The shapes world: procedural ground truth, captions, the analyzer and the zoo's training recipes."""
from .analyzer import FrameAttributes, analyze, analyze_frames, matches, trajectory
from .captions import caption, clip_caption, parse_prompt
from .shapes import (BACKGROUNDS, COLORS, HELD_OUT_COMBOS, POSITIONS, SHAPES, SIZES, Scene,
                     iter_scenes, random_scene, render, render_batch, render_clip)
