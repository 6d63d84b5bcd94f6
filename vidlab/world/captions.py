"""Captions of the shapes world: templates with paraphrases, and the parser that reads them back.

>>> from vidlab.world.shapes import Scene
>>> caption(Scene("circle", "red", "white", "top left", "small"), template=0)
'a small red circle in the top left on a white background'
>>> parse_prompt("a red circle in the top left on a white background")["color"]
'red'
"""
from __future__ import annotations

import re

import numpy as np

from .shapes import BACKGROUNDS, COLORS, DIRECTIONS, POSITIONS, SHAPES, SIZES, SPEEDS, Scene, random_scene

# Paraphrases: each canonical position has several surface forms.
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("top left", "upper left"),
    "top": ("top", "top middle"),
    "top right": ("top right", "upper right"),
    "left": ("left", "middle left"),
    "center": ("center", "middle"),
    "right": ("right", "middle right"),
    "bottom left": ("bottom left", "lower left"),
    "bottom": ("bottom", "bottom middle"),
    "bottom right": ("bottom right", "lower right"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
}

TEMPLATES = (
    "a {size} {color} {shape} in the {position} on a {background} background",
    "a {color} {shape} in the {position} on a {background} background",
    "{color} {shape} , {position} , {background} background",
    "a {background} background with a {color} {shape} in the {position}",
    "there is a {size} {color} {shape} at the {position} over {background}",
    "{position} : a {color} {shape} on {background}",
)


def caption(scene: Scene, template: int | None = None, rng: np.random.Generator | None = None) -> str:
    """A caption of the scene; template index and paraphrases drawn from rng when not given."""
    rng = rng or np.random.default_rng(0)
    if template is None:
        template = int(rng.integers(len(TEMPLATES)))
    if not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template={template} is not in [0, {len(TEMPLATES) - 1}]")
    paraphrase = rng.integers(2) if template != 0 else 0
    pos_forms = POSITION_WORDS[scene.position]
    shape_forms = SHAPE_WORDS[scene.shape]
    return TEMPLATES[template].format(
        size=scene.size, color=scene.color, background=scene.background,
        position=pos_forms[paraphrase % len(pos_forms)],
        shape=shape_forms[paraphrase % len(shape_forms)],
    )


def captioned_scenes(n: int, seed: int, heldout_fraction: float = 0.2):
    """n scenes (the last `heldout_fraction` of them from held-out colour-shape combos), a caption each,
    and whether each is held out: the prompt sets the zoo is measured on."""
    rng = np.random.default_rng(seed)
    n_held = int(round(n * heldout_fraction))
    scenes = [random_scene(rng, "train") for _ in range(n - n_held)] + [random_scene(rng, "heldout") for _ in range(n_held)]
    prompts = [caption(s, rng=rng) for s in scenes]
    return scenes, prompts, [False] * (n - n_held) + [True] * n_held


GROWTH_WORDS = {"grows": 1, "shrinks": -1}


def clip_caption(scene: Scene, direction: str | None, speed: str = "slowly", growth: str | None = None,
                 camera: str | None = None) -> str:
    """Caption of a clip: 'a red circle moves left slowly on a navy background'.

    growth ('grows' / 'shrinks') and a camera pan direction are said when given:
    'a red circle moves up quickly and grows on a navy background , the camera pans left'.
    """
    if growth is not None and growth not in GROWTH_WORDS:
        raise ValueError(f"growth={growth!r} is not one of {[None, *GROWTH_WORDS]}")
    motion = f"moves {direction} {speed}" if direction else "stays still"
    if growth:
        motion += f" and {growth}"
    text = f"a {scene.color} {scene.shape} {motion} on a {scene.background} background"
    return text + (f" , the camera pans {camera}" if camera else "")


def _find(text: str, forms: dict[str, tuple[str, ...]]) -> str | None:
    """Canonical key whose longest surface form occurs in text as whole words."""
    best, best_len = None, 0
    for key, words in forms.items():
        for w in words:
            if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text) and len(w) > best_len:
                best, best_len = key, len(w)
    return best


def parse_prompt(prompt: str) -> dict[str, str | None]:
    """Map a caption back to the attributes it asks for; None where it names none.

    Keys: shape, color, background, position, size, direction, speed, growth, camera.
    The background is the colour word followed by 'background', or after 'on'/'over';
    the subject colour is the first foreground colour word.
    """
    text = " ".join(prompt.lower().replace(",", " , ").split())
    background = None
    for name in BACKGROUNDS:
        if re.search(rf"(?:(?:on|over|against) (?:a |an )?{name}\b|\b{name} (?:background|backdrop))", text):
            background = name
            break
    color = None
    hits = [(m.start(), name) for name in COLORS for m in re.finditer(rf"(?<![a-z]){name}(?![a-z])", text)]
    if hits:
        color = min(hits)[1]
    motion_re = r"((?:up|down) (?:left|right)|left|right|up|down)"
    direction = camera = None
    if motion := re.search(rf"moves {motion_re}", text):
        direction = motion.group(1)
    if pan := re.search(rf"pans {motion_re}", text):
        camera = pan.group(1)
    # remove motion words before reading the position, so "moves left" is not a position
    text_wo_motion = re.sub(rf"(?:moves|pans) {motion_re}", " ", text)
    return {
        "shape": _find(text, SHAPE_WORDS),
        "color": color,
        "background": background,
        "position": _find(text_wo_motion, POSITION_WORDS),
        "size": next((s for s in SIZES if re.search(rf"\b{s}\b", text)), None),
        "direction": direction,
        "speed": next((s for s in SPEEDS if re.search(rf"\b{s}\b", text)), None),
        "growth": next((g for g in GROWTH_WORDS if re.search(rf"\b{g}\b", text)), None),
        "camera": camera,
    }


# Words added after the zoo's text encoder was first trained: they get ids after the sorted
# vocabulary, so every earlier word keeps its id (and its trained embedding).
ADDED_WORDS = ("and", "grows", "shrinks", "camera", "pans")


def motion_token(verb: str, direction: str) -> str:
    """The single token the tokenizer reads 'moves up left' / 'pans left' as: 'go_up_left', 'pan_left'.

    'left', 'up', ... are position words of the image model, trained and frozen with that meaning.
    A motion phrase gets a token of its own, so the video model learns its embedding without
    touching what 'in the top left' means to text-to-image.
    """
    prefix = {"moves": "go", "pans": "pan"}[verb]
    return f"{prefix}_{direction.replace(' ', '_')}"


# longest first, so 'moves up left' is never read as 'moves up' + 'left'
MOTION_PHRASES: tuple[tuple[str, str], ...] = tuple(
    (f"{verb} {d}", f"{verb} {motion_token(verb, d)}")
    for d in sorted(DIRECTIONS, key=len, reverse=True) for verb in ("moves", "pans"))
MOTION_TOKENS = tuple(sorted({token.split()[1] for _, token in MOTION_PHRASES}))


def vocabulary() -> list[str]:
    """Every word the captions use (for the word-level tokenizer), in token-id order."""
    words: set[str] = set()
    pieces = list(TEMPLATES) + list(COLORS) + list(BACKGROUNDS) + list(SIZES) + list(SPEEDS)
    pieces += [w for forms in POSITION_WORDS.values() for w in forms]
    pieces += [w for forms in SHAPE_WORDS.values() for w in forms]
    pieces += list(DIRECTIONS) + ["moves stays still", "same subject same lighting continues",
                                  "and then the", "rainbow appears bright", "style 3d animation"]
    for p in pieces:
        for w in re.sub(r"\{[a-z]+\}", " ", p).replace(",", " , ").replace(":", " : ").split():
            words.add(w)
    return sorted(words) + [w for w in ADDED_WORDS + MOTION_TOKENS if w not in words]


def words_of(prompt: str) -> list[str]:
    """The words of a prompt as the shapes world reads them: lower case, commas and colons apart."""
    return prompt.lower().replace(",", " , ").replace(":", " : ").split()


def shapes_world_reason(prompt: str) -> str | None:
    """None when the prompt is a shapes-world prompt (names a shape, every word in `vocabulary()`);
    otherwise why not, so a shapes-world metric can be recorded as not applicable.

    >>> shapes_world_reason("a red circle in the center on a white background") is None
    True
    >>> shapes_world_reason("a red car on a road")
    "words outside the shapes world: ['car', 'road']"
    """
    known = set(vocabulary())
    unknown = [w for w in dict.fromkeys(words_of(prompt)) if w not in known]
    if unknown:
        return f"words outside the shapes world: {unknown}"
    if parse_prompt(prompt)["shape"] is None:
        return "names no shape"
    return None


assert all(s in SHAPES for s in SHAPE_WORDS) and all(p in POSITIONS for p in POSITION_WORDS)
