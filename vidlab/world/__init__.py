"""The shapes world, its ground truth only: shapes, captions and the tokenizer's vocabulary, the analyzer, clips."""
from .analyzer import FrameAttributes, analyze, analyze_frames, matches, trajectory
from .captions import caption, clip_caption, parse_prompt
from .shapes import (BACKGROUNDS, COLORS, HELD_OUT_COMBOS, POSITIONS, SHAPES, SIZES, Scene,
                     iter_scenes, random_scene, render, render_batch, render_clip)
