"""A deterministic synthetic categorical VQA suite of drawn shapes: a registry of tasks, each a row generator.

Every task draws onto a `Canvas`; the canvas parameters (size, background, scale) come from the spec's `params`, so a
distribution-shifted variant of a task is the same task function with other parameters, never a copy of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SnError

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
GRID = 3  # shapes sit in distinct cells of a GRID x GRID layout, so they never overlap
BACKGROUND = (128, 128, 128)

TASKS: dict[str, Callable[..., list[dict]]] = {}


@dataclass(frozen=True)
class Canvas:
    """How images are drawn: side in pixels, background colour, and a factor on every shape's size."""

    size: int = 64
    background: tuple[int, int, int] = BACKGROUND
    scale: float = 1.0


@dataclass(frozen=True)
class Placed:
    """One drawn object: its kind and where it sits (centre, radius, grid column and row)."""

    shape: str
    colour: str
    cx: float
    cy: float
    r: float
    col: int
    row: int


def task(name: str):
    def deco(fn):
        TASKS[name] = fn
        return fn

    return deco


def _canvas(image_size: int, background: Sequence[int], scale: float) -> Canvas:
    bg = tuple(int(v) for v in background)
    if len(bg) != 3 or not all(0 <= v <= 255 for v in bg):
        raise SnError(f"synthetic background must be three values in 0..255, got {list(background)}")
    if bg in COLOURS.values():
        raise SnError(f"synthetic background {list(bg)} is a shape colour")
    if not 0 < scale <= 1:  # larger shapes could leave their grid cell and overlap a neighbour
        raise SnError(f"synthetic scale must be in (0, 1], got {scale}")
    if image_size < 2 * GRID:
        raise SnError(f"synthetic image_size must be at least {2 * GRID}, got {image_size}")
    return Canvas(int(image_size), bg, float(scale))


def generate(name: str, seed: int = 0, n: int = 200, image_size: int = 64,
             background: Sequence[int] = BACKGROUND, scale: float = 1.0) -> list[dict]:
    """Rows {id, image (PIL), question, answer, objects} of synthetic task `name`, identical for the same arguments.

    `objects` lists the drawn `Placed` objects (the ground truth the answer is derived from)."""
    if name not in TASKS:
        raise SnError(f"unknown synthetic task {name!r} (known: {sorted(TASKS)})")
    if n < 1:
        raise SnError(f"synthetic task {name}: n must be positive, got {n}")
    canvas = _canvas(image_size, background, scale)
    rng = np.random.default_rng(seed)
    return [dict(row, id=f"{name}-{i:05d}") for i, row in enumerate(TASKS[name](rng, n, canvas))]


def layout(objects: list[tuple[str, str]], rng: np.random.Generator, canvas: Canvas) -> list[Placed]:
    """Place (shape, colour) objects in distinct random cells, with a random size and a small jitter."""
    cell = canvas.size / GRID
    placed = []
    for (shape, colour), slot in zip(objects, rng.permutation(GRID * GRID)):
        r = cell * rng.uniform(0.3, 0.45) * canvas.scale
        cx = (slot % GRID + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        cy = (slot // GRID + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        placed.append(Placed(shape, colour, cx, cy, r, int(slot % GRID), int(slot // GRID)))
    return placed


def render(placed: list[Placed], canvas: Canvas) -> Image.Image:
    img = Image.new("RGB", (canvas.size, canvas.size), canvas.background)
    pen = ImageDraw.Draw(img)
    for p in placed:
        box = (p.cx - p.r, p.cy - p.r, p.cx + p.r, p.cy + p.r)
        PAINTERS[p.shape](pen, p, box, COLOURS[p.colour])
    return img


PAINTERS: dict[str, Callable] = {
    "circle": lambda pen, p, box, fill: pen.ellipse(box, fill=fill),
    "square": lambda pen, p, box, fill: pen.rectangle(box, fill=fill),
    "triangle": lambda pen, p, box, fill: pen.polygon(
        [(p.cx, p.cy - p.r), (p.cx - p.r, p.cy + p.r), (p.cx + p.r, p.cy + p.r)], fill=fill),
}


def _row(placed: list[Placed], canvas: Canvas, question: str, answer: str) -> dict:
    return {"image": render(placed, canvas), "question": question, "answer": answer, "objects": placed}


def _random_colour(rng: np.random.Generator) -> str:
    return list(COLOURS)[rng.integers(len(COLOURS))]


def _random_object(rng: np.random.Generator, exclude: tuple[str, str] | None = None) -> tuple[str, str]:
    while True:
        obj = (SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))])
        if obj != exclude:
            return obj


@task("exist")
def exist_task(rng: np.random.Generator, n: int, canvas: Canvas) -> list[dict]:
    """"Is there a red circle?" yes/no (like POPE), balanced; negatives include near misses (red squares, ...)."""
    target = ("circle", "red")
    rows = []
    for i in range(n):
        answer = "yes" if i % 2 else "no"
        objs = [_random_object(rng, exclude=target) for _ in range(rng.integers(1, 4))]
        if answer == "yes":
            objs[rng.integers(len(objs))] = target
        rows.append(_row(layout(objs, rng, canvas), canvas, "Is there a red circle in the image?", answer))
    return rows


@task("color")
def color_task(rng: np.random.Generator, n: int, canvas: Canvas) -> list[dict]:
    """"What colour is the square?" over four colours, balanced; distractors are circles and triangles."""
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % len(names)]
        objs = [("square", colour)]
        objs += [(SHAPES[rng.choice([0, 2])], names[rng.integers(len(names))]) for _ in range(rng.integers(0, 3))]
        rows.append(_row(layout(objs, rng, canvas), canvas, "What colour is the square?", colour))
    return rows


@task("count")
def count_task(rng: np.random.Generator, n: int, canvas: Canvas) -> list[dict]:
    """"How many shapes are in the image?" 1 to 4 (like CountBench), balanced; shapes and colours at random."""
    rows = []
    for i in range(n):
        k = i % 4 + 1
        objs = [_random_object(rng) for _ in range(k)]
        rows.append(_row(layout(objs, rng, canvas), canvas, "How many shapes are in the image?", str(k)))
    return rows


@task("position")
def position_task(rng: np.random.Generator, n: int, canvas: Canvas) -> list[dict]:
    """"Is the red circle to the left or to the right of the blue square?" (relative position, like InstaOrder's
    order between instances), balanced. The two sit in different grid columns, beside one or two distractors: near
    misses (a red square, a blue circle: colour alone cannot tell which is which) or triangles of any colour. When
    the layout puts them on the wrong sides for the wanted answer, the two swap places."""
    rows = []
    for i in range(n):
        answer = "right" if i % 2 else "left"
        objs = [("circle", "red"), ("square", "blue")]
        for _ in range(rng.integers(1, 3)):
            objs.append([("square", "red"), ("circle", "blue"), ("triangle", _random_colour(rng))][rng.integers(3)])
        placed = layout(objs, rng, canvas)
        while placed[0].col == placed[1].col:
            placed = layout(objs, rng, canvas)
        if (placed[0].col > placed[1].col) != (answer == "right"):
            placed[0], placed[1] = _moved(placed[0], placed[1]), _moved(placed[1], placed[0])
        question = "Is the red circle to the left or to the right of the blue square?"
        rows.append(_row(placed, canvas, question, answer))
    return rows


def _moved(obj: Placed, to: Placed) -> Placed:
    """`obj` at the place (centre and cell) of `to`, keeping its own kind and size."""
    return Placed(obj.shape, obj.colour, to.cx, to.cy, obj.r, to.col, to.row)
