"""The synthetic suite: deterministic, balanced, and every label is what the image shows, checked from the pixels
alone (regions of one shape colour, told apart by how much of their bounding box they fill), never from the
generator's own object list."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sn_store.datasets import TASKS, load_dataset, resolve_spec
from sn_store.datasets.synthetic import COLOURS, GRID, generate
from sn_store.errors import SnError

BUILTIN = ["shapes-exist", "shapes-color", "shapes-count", "shapes-position", "shapes-exist-shift"]
NAMES = list(COLOURS)


def blobs(img) -> list[dict]:
    """The shapes seen in the pixels alone, one per occupied cell of the 3 x 3 layout: a shape's centre stays within
    0.05 cell of its cell's centre and its radius is at least 0.2 cell, so a cell is occupied iff its centre pixel
    has a shape colour; the shape is that colour's region connected to the centre (within the cell: neighbours may
    touch it at the border). Returns colour, pixel area, bounding-box fill and centroid of each."""
    px = np.asarray(img).astype(int)
    code = np.full(px.shape[:2], -1)
    for k, rgb in enumerate(COLOURS.values()):
        code[(px == rgb).all(-1)] = k
    background = px[code < 0]
    assert (background == background[0]).all(), "every pixel is the background or an exact shape colour"
    cell = px.shape[0] / GRID
    out = []
    for row in range(GRID):
        for col in range(GRID):
            y0, x0 = round(row * cell), round(col * cell)
            box = code[y0 : round((row + 1) * cell), x0 : round((col + 1) * cell)]
            centre = (int((row + 0.5) * cell) - y0, int((col + 0.5) * cell) - x0)
            if box[centre] < 0:
                continue
            ys, xs = flood(box == box[centre], centre)
            area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            out.append({"colour": NAMES[box[centre]], "area": len(ys), "fill": len(ys) / area,
                        "x": x0 + xs.mean(), "y": y0 + ys.mean()})
    return out


def flood(mask: np.ndarray, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the 4-connected region of `mask` containing `seed`."""
    seen = np.zeros_like(mask)
    stack = [seed]
    while stack:
        y, x = stack.pop()
        if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and mask[y, x] and not seen[y, x]:
            seen[y, x] = True
            stack += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    return np.nonzero(seen)


def kind(blob: dict) -> str:
    """Square fills its box, a circle about pi/4 of it, a triangle about half."""
    return "square" if blob["fill"] > 0.93 else "circle" if blob["fill"] > 0.66 else "triangle"


def rows_of(spec_name: str, n: int = 256) -> list[dict]:
    spec = resolve_spec(spec_name)
    return generate(spec.source, seed=spec.seed, **{**spec.params, "n": n})


@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_arguments_same_pixels(name):
    a, b = generate(name, seed=3, n=12), generate(name, seed=3, n=12)
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, b))
    other = generate(name, seed=4, n=12)
    assert any(not np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, other))


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_specs_are_balanced_with_disjoint_splits(name):
    ds = load_dataset(name)
    k = len(ds.spec.classes)
    assert Counter(ds.labels.tolist()) == dict.fromkeys(range(k), 256 // k)
    for split in ("probe", "eval"):
        labels = [s.label for s, sp in zip(ds.samples, ds.split) if sp == split]
        assert Counter(labels) == dict.fromkeys(range(k), 128 // k)
    assert len({s.id for s in ds.samples}) == 256
    assert all(s.question.endswith("\n" + ds.spec.task_suffix) for s in ds.samples)


def test_images_are_freshly_drawn():
    """Held-out images: every sample is drawn anew, so identical pixels are rare coincidences (a lone shape can
    rasterise the same twice) and no image is shared between two built-in specs."""
    seen: dict[bytes, set[str]] = {}
    for name in BUILTIN:
        for s in load_dataset(name).samples:
            seen.setdefault(s.image_digest(), set()).add(name)
    assert len(seen) >= 0.98 * 256 * len(BUILTIN)
    assert all(len(names) == 1 for names in seen.values())


def test_count_is_the_number_of_shapes_seen():
    for row in rows_of("shapes-count"):
        assert len(blobs(row["image"])) == int(row["answer"])


@pytest.mark.parametrize("name", ["shapes-exist", "shapes-exist-shift"])
def test_exist_is_a_red_circle_in_the_pixels(name):
    for row in rows_of(name):
        red_circle = any(b["colour"] == "red" and kind(b) == "circle" for b in blobs(row["image"]))
        assert red_circle == (row["answer"] == "yes")


def test_color_is_the_colour_of_the_one_square():
    for row in rows_of("shapes-color"):
        squares = [b for b in blobs(row["image"]) if kind(b) == "square"]
        assert len(squares) == 1 and squares[0]["colour"] == row["answer"]


def test_position_compares_circle_and_square_centroids():
    for row in rows_of("shapes-position"):
        found = blobs(row["image"])
        assert len(found) in (3, 4)
        [circle] = [b for b in found if kind(b) == "circle" and b["colour"] == "red"]
        [square] = [b for b in found if kind(b) == "square" and b["colour"] == "blue"]
        assert abs(circle["x"] - square["x"]) > 64 / 6  # different grid columns
        assert (circle["x"] > square["x"]) == (row["answer"] == "right")


def backgrounds(rows: list[dict]) -> set[tuple[int, ...]]:
    """The most frequent colour of each image."""
    out = set()
    for r in rows:
        colours, counts = np.unique(np.asarray(r["image"]).reshape(-1, 3), axis=0, return_counts=True)
        out.add(tuple(int(v) for v in colours[counts.argmax()]))
    return out


def mean_area(rows: list[dict]) -> float:
    return float(np.mean([b["area"] for r in rows for b in blobs(r["image"])]))


def test_shifted_variant_differs_in_distribution():
    base, shift = rows_of("shapes-exist"), rows_of("shapes-exist-shift")
    assert backgrounds(base) == {(128, 128, 128)} and backgrounds(shift) == {(176, 176, 176)}
    assert mean_area(shift) < 0.6 * mean_area(base)  # scale 0.7: about half the area
    assert resolve_spec("shapes-exist-shift").seed != resolve_spec("shapes-exist").seed
    assert resolve_spec("shapes-exist-shift").source == resolve_spec("shapes-exist").source


@pytest.mark.parametrize("params,msg", [
    ({"scale": 1.5}, "scale must be in"),
    ({"background": [1, 2]}, "three values"),
    ({"background": list(COLOURS["red"])}, "is a shape colour"),
    ({"n": 0}, "n must be positive"),
])
def test_bad_parameters_are_errors(params, msg):
    with pytest.raises(SnError, match=msg):
        generate("exist", **params)
