"""A deterministic synthetic categorical VQA suite of drawn shapes: a registry of tasks, each a row generator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SnError

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
GRID = 3  # shapes sit in distinct cells of a GRID x GRID layout, so they never overlap

TASKS: dict[str, Callable[..., list[dict]]] = {}


def task(name: str):
    def deco(fn):
        TASKS[name] = fn
        return fn

    return deco


def generate(name: str, seed: int = 0, n: int = 200, image_size: int = 64) -> list[dict]:
    """Rows {id, image (PIL), question, answer} of synthetic task `name`, identical for the same arguments."""
    if name not in TASKS:
        raise SnError(f"unknown synthetic task {name!r} (known: {sorted(TASKS)})")
    if n < 1:
        raise SnError(f"synthetic task {name}: n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    return [dict(row, id=f"{name}-{i:05d}") for i, row in enumerate(TASKS[name](rng, n, image_size))]


def draw(objects: list[tuple[str, str]], rng: np.random.Generator, size: int) -> Image.Image:
    """Draw (shape, colour) objects into distinct random cells of a grey canvas."""
    img = Image.new("RGB", (size, size), (128, 128, 128))
    pen = ImageDraw.Draw(img)
    cell = size / GRID
    for (shape, colour), slot in zip(objects, rng.permutation(GRID * GRID)):
        r = cell * rng.uniform(0.3, 0.45)
        cx = (slot % GRID + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        cy = (slot // GRID + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = COLOURS[colour]
        if shape == "circle":
            pen.ellipse(box, fill=fill)
        elif shape == "square":
            pen.rectangle(box, fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def _random_object(rng: np.random.Generator, exclude: tuple[str, str] | None = None) -> tuple[str, str]:
    while True:
        obj = (SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))])
        if obj != exclude:
            return obj


@task("exist")
def exist_task(rng: np.random.Generator, n: int, size: int) -> list[dict]:
    """"Is there a red circle?" yes/no, balanced; negatives include near misses (red squares, blue circles)."""
    target = ("circle", "red")
    rows = []
    for i in range(n):
        answer = "yes" if i % 2 else "no"
        objs = [_random_object(rng, exclude=target) for _ in range(rng.integers(1, 4))]
        if answer == "yes":
            objs[rng.integers(len(objs))] = target
        rows.append({"image": draw(objs, rng, size), "question": "Is there a red circle in the image?",
                     "answer": answer})
    return rows


@task("color")
def color_task(rng: np.random.Generator, n: int, size: int) -> list[dict]:
    """"What colour is the square?" over four colours, balanced; distractors are circles and triangles."""
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % len(names)]
        objs = [("square", colour)]
        objs += [(SHAPES[rng.choice([0, 2])], names[rng.integers(len(names))]) for _ in range(rng.integers(0, 3))]
        rows.append({"image": draw(objs, rng, size), "question": "What colour is the square?", "answer": colour})
    return rows
