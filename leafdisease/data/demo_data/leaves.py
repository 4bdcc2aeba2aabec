"""Leaf geometry: each crop's leaf outline, veins and petiole in leaf-local units (the leaf base, where the petiole
joins, at (0, 0), the tip towards +u), a random pose in the frame, and the drawn leaf the disease painters paint on."""
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from leafdisease.data.demo_data.raster import SUBPIXEL_BITS, blend, fixed_point, smooth_noise, smoothstep


@dataclass
class _LeafShape:
    outlines: list = field(default_factory=list)  # filled polygons (N x 2)
    veins: list = field(default_factory=list)  # (polyline N x 2, strength 0..1, width)
    stems: list = field(default_factory=list)  # (polyline N x 2, width): petioles, drawn solid


def _place(points, origin=(0.0, 0.0), angle=0.0, scale=1.0):
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ rotation.T * scale + np.asarray(origin)


def _add_placed(shape, part, origin, angle, scale):
    shape.outlines += [_place(outline, origin, angle, scale) for outline in part.outlines]
    shape.veins += [
        (_place(line, origin, angle, scale), strength, width * scale) for line, strength, width in part.veins
    ]


def _leaflet(
    rng,
    aspect,
    base_exp,
    tip_exp,
    teeth=0,
    tooth_depth=0.0,
    lobes=0,
    lobe_depth=0.0,
    wave=0.0,
    wave_freq=0.0,
    bend=0.0,
    laterals=7,
    parallel_veins=False,
):
    """A pinnate-veined leaflet from u=0 to u=1: half-width profile t^base_exp (1-t)^tip_exp, then serration
    (sawtooth teeth pointing to the tip), lobes (deep narrow sinuses) and a wavy margin, each side independent."""
    n_points = max(90, teeth * 5)
    t = np.linspace(0.0, 1.0, n_points)
    profile = t**base_exp * (1 - t) ** tip_exp
    profile /= profile.max()
    midline = bend * t**2
    half_widths = []
    for _ in range(2):
        half = aspect * rng.uniform(0.92, 1.08) * profile
        if teeth:
            half = half * (1 - tooth_depth * ((t * teeth + rng.random()) % 1.0))
        if lobes:
            notch = (1 - np.abs(np.sin(np.pi * (t * lobes + rng.uniform(0.2, 0.8))))) ** 3
            half = half * (1 - lobe_depth * notch * (t > 0.1))
        if wave:
            half = half * (1 + wave * np.sin(2 * np.pi * (t * wave_freq + rng.random())))
        half_widths.append(half)
    upper = np.stack([t, midline + half_widths[0]], axis=1)
    lower = np.stack([t, midline - half_widths[1]], axis=1)
    shape = _LeafShape(outlines=[np.concatenate([upper, lower[::-1]])])
    shape.veins.append((np.stack([t[t < 0.96], midline[t < 0.96]], axis=1), 1.0, 0.014))

    def edge(side, u):
        return np.interp(u, t, half_widths[side]) * (1 if side == 0 else -1) + bend * u**2

    if parallel_veins:
        for fraction in (0.3, 0.55, 0.8):
            for side in (0, 1):
                u = t[(t > 0.02) & (t < 0.97)]
                line = np.stack([u, bend * u**2 + (edge(side, u) - bend * u**2) * fraction], axis=1)
                shape.veins.append((line, 0.25, 0.003))
        return shape
    starts = np.linspace(0.08, 0.8, laterals) + rng.uniform(-0.02, 0.02, laterals)
    for side in (0, 1):
        for start in starts:
            end = min(start + 0.16, 0.97)
            mid = (start + end) / 2
            line = np.array(
                [
                    [start, bend * start**2],
                    [mid, bend * mid**2 + 0.45 * (edge(side, mid) - bend * mid**2)],
                    [end, bend * end**2 + 0.85 * (edge(side, end) - bend * end**2)],
                ]
            )
            shape.veins.append((line, 0.55, 0.005))
    return shape


def _simple_leaf(rng, petiole, wing=False, **leaflet_args):
    shape = _leaflet(rng, **leaflet_args)
    shape.stems.append((np.array([[-petiole, 0.0], [0.02, 0.0]]), 0.018))
    if wing:
        wing_shape = _leaflet(rng, aspect=0.07, base_exp=1.2, tip_exp=0.4, laterals=2)
        shape.outlines += [_place(outline, (-0.2, 0.0), 0.0, 0.2) for outline in wing_shape.outlines]
    return shape


def _apple(rng, curl):
    return _simple_leaf(rng, 0.2, aspect=rng.uniform(0.36, 0.44), base_exp=0.55, tip_exp=0.85, teeth=26,
                        tooth_depth=0.05, laterals=7)


def _cherry(rng, curl):
    return _simple_leaf(rng, 0.22, aspect=rng.uniform(0.29, 0.35), base_exp=0.85, tip_exp=1.1, teeth=36,
                        tooth_depth=0.08, laterals=9)


def _peach(rng, curl):
    return _simple_leaf(rng, 0.07, aspect=rng.uniform(0.15, 0.19), base_exp=0.7, tip_exp=1.15, teeth=48,
                        tooth_depth=0.035, bend=rng.uniform(-0.12, 0.12), laterals=12)


def _citrus(rng, curl):
    return _simple_leaf(rng, 0.12, wing=True, aspect=rng.uniform(0.3, 0.36), base_exp=0.75, tip_exp=0.8,
                        wave=0.015, wave_freq=12, laterals=9)


def _pepper(rng, curl):
    return _simple_leaf(rng, 0.28, aspect=rng.uniform(0.26, 0.32), base_exp=0.6, tip_exp=1.35, wave=0.03,
                        wave_freq=2.5, laterals=6)


def _corn(rng, curl):
    return _leaflet(rng, aspect=rng.uniform(0.06, 0.08), base_exp=0.25, tip_exp=0.45, wave=0.04,
                    wave_freq=22, bend=rng.uniform(-0.1, 0.1), parallel_veins=True)


def _grape(rng, curl):
    """Palmate, five-lobed, with a petiolar sinus at the base; centred on the petiole junction."""
    theta = np.linspace(-np.pi, np.pi, 240, endpoint=False)
    spread = rng.uniform(0.85, 1.05)
    lobe_angles = np.array([0.0, spread, -spread, 2 * spread, -2 * spread])
    lobe_lengths = np.array([1.0, 0.88, 0.88, 0.62, 0.62]) * rng.uniform(0.92, 1.08, 5)
    radius = np.full_like(theta, 0.32)
    for angle, length in zip(lobe_angles, lobe_lengths):
        offset = np.angle(np.exp(1j * (theta - angle)))
        radius += 0.68 * length * np.exp(-((offset / 0.4) ** 2))
    radius *= 1 - 0.8 * np.exp(-(((np.abs(theta) - np.pi) / 0.3) ** 2))
    radius *= 1 - 0.07 * ((theta * 30 / (2 * np.pi) + rng.random()) % 1.0)
    shape = _LeafShape(outlines=[np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)])
    for angle, length in zip(lobe_angles, lobe_lengths):
        tip = 0.85 * (0.32 + 0.68 * length) * np.array([math.cos(angle), math.sin(angle)])
        shape.veins.append((np.stack([np.zeros(2), tip]), 1.0 if angle == 0 else 0.8, 0.012))
        for fraction in (0.25, 0.45, 0.65, 0.82):
            for side in (-1, 1):
                branch_angle = angle + side * 0.75
                start = fraction * tip
                end = start + 0.22 * length * np.array([math.cos(branch_angle), math.sin(branch_angle)])
                shape.veins.append((np.stack([start, end]), 0.5, 0.005))
    shape.stems.append((np.array([[-0.45, 0.0], [0.0, 0.0]]), 0.03))
    return shape


def _strawberry(rng, curl):
    """Trifoliate: three coarsely toothed obovate leaflets on short stalks from one point."""
    shape = _LeafShape(stems=[(np.array([[-0.45, 0.0], [0.0, 0.0]]), 0.025)])
    side_angle = rng.uniform(1.0, 1.25)
    for angle in (0.0, side_angle, -side_angle):
        leaflet = _leaflet(rng, aspect=rng.uniform(0.34, 0.4), base_exp=1.3, tip_exp=0.5, teeth=13,
                           tooth_depth=0.14, laterals=7)
        _add_placed(shape, leaflet, (0.04 * math.cos(angle), 0.04 * math.sin(angle)), angle, 0.52)
    return shape


def _potato(rng, curl):
    """Compound: a broad terminal leaflet and two pairs of lateral leaflets along a rachis."""
    shape = _LeafShape(stems=[(np.array([[-0.15, 0.0], [0.52, 0.0]]), 0.022)])
    terminal = _leaflet(rng, aspect=rng.uniform(0.36, 0.42), base_exp=0.5, tip_exp=0.85, laterals=6)
    _add_placed(shape, terminal, (0.5, 0.0), 0.0, 0.5)
    for position, size in ((0.04, 0.26), (0.27, 0.32)):
        for side in (-1, 1):
            leaflet = _leaflet(rng, aspect=rng.uniform(0.36, 0.42), base_exp=0.5, tip_exp=0.85, laterals=4)
            _add_placed(shape, leaflet, (position, 0.0), side * rng.uniform(1.15, 1.45), size)
    return shape


def _tomato(rng, curl):
    """Compound: an irregularly lobed terminal leaflet and one pair of lateral leaflets. `curl` (yellow leaf
    curl, mosaic) narrows the leaflets, crinkles their margins and shrinks the lobes."""
    args = dict(base_exp=0.45, tip_exp=0.9, teeth=14, tooth_depth=0.08, lobes=3, lobe_depth=0.35 * (1 - curl),
                wave=0.14 * curl, wave_freq=7, laterals=5)
    shape = _LeafShape(stems=[(np.array([[-0.2, 0.0], [0.42, 0.0]]), 0.022)])
    terminal = _leaflet(rng, aspect=rng.uniform(0.36, 0.44) * (1 - 0.4 * curl), **args)
    _add_placed(shape, terminal, (0.4, 0.0), 0.0, 0.6)
    for side in (-1, 1):
        leaflet = _leaflet(rng, aspect=rng.uniform(0.36, 0.44) * (1 - 0.4 * curl), **args)
        _add_placed(shape, leaflet, (0.15, 0.0), side * rng.uniform(0.9, 1.25), 0.38)
    return shape


# name: (outline builder, base leaf colour RGB 0..1, glossy)
_CROPS = {
    "Apple": (_apple, (0.33, 0.5, 0.2), False),
    "Cherry": (_cherry, (0.24, 0.46, 0.17), False),
    "Corn": (_corn, (0.42, 0.6, 0.24), False),
    "Grape": (_grape, (0.36, 0.54, 0.22), False),
    "Citrus": (_citrus, (0.14, 0.36, 0.11), True),
    "Peach": (_peach, (0.4, 0.58, 0.2), False),
    "Pepper": (_pepper, (0.2, 0.47, 0.16), True),
    "Potato": (_potato, (0.28, 0.48, 0.22), False),
    "Strawberry": (_strawberry, (0.2, 0.42, 0.16), False),
    "Tomato": (_tomato, (0.3, 0.5, 0.22), False),
}


@dataclass
class Pose:
    """Maps leaf-local points q to pixels: p = matrix @ (q - centre) + target."""

    matrix: np.ndarray
    centre: np.ndarray
    target: np.ndarray

    def to_pixels(self, points):
        return (points - self.centre) @ self.matrix.T + self.target

    @property
    def pixels_per_unit(self):
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def axis_degrees(self):
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))


def _random_pose(rng, shape, size, crop, shrink):
    points = np.concatenate(shape.outlines)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    if crop == "Corn":
        # A blade longer than the frame, crossing it somewhere near the middle.
        length = size * rng.uniform(1.6, 2.3)
        centre = centre + np.array([rng.uniform(-0.15, 0.15), 0.0])
    else:
        extent = np.max(np.linalg.norm(points - centre, axis=1))
        length = size * 0.5 * rng.uniform(0.8, 1.02) * shrink / extent
    angle = rng.uniform(0, 2 * np.pi)
    mirror = rng.choice([-1.0, 1.0])
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = length * np.array([[cos, -mirror * sin], [sin, mirror * cos]])
    target = size * (0.5 + rng.uniform(-0.1, 0.1, 2))
    return Pose(matrix, centre, target)


@dataclass
class Leaf:
    """A drawn leaf: its colour layer (painted on by the disease), coverage and geometry in pixels."""

    rng: np.random.Generator
    size: int
    colour: np.ndarray  # S x S x 3, defined everywhere, shown where alpha > 0
    alpha: np.ndarray  # S x S, anti-aliased leaf coverage
    edge_distance: np.ndarray  # S x S, pixels to the leaf margin
    veins: np.ndarray  # S x S, vein strength 0..1
    pose: Pose
    inside_x: np.ndarray
    inside_y: np.ndarray

    def random_points(self, count):
        index = self.rng.integers(0, len(self.inside_x), count)
        jitter = self.rng.random((2, count))
        return self.inside_x[index] + jitter[0], self.inside_y[index] + jitter[1]

    def quantile_inside(self, values, fraction):
        sample = values[self.inside_y[::3], self.inside_x[::3]]
        return float(np.quantile(sample, min(max(fraction, 0.0), 1.0)))

    def region(self, values, fraction, softness):
        """Soft mask of the `fraction` of the leaf where `values` is lowest."""
        threshold = self.quantile_inside(values, fraction)
        return smoothstep((threshold - values) / softness + 0.5)


def draw_leaf(rng, crop, size, curl):
    """A leaf of `crop` (curled by `curl`, 0 flat .. 1 tightly curled) drawn at a random pose in a size x size frame."""
    builder, base_colour, glossy = _CROPS[crop]
    shape = builder(rng, curl)
    pose = _random_pose(rng, shape, size, crop, shrink=1 - 0.2 * curl)
    scale = pose.pixels_per_unit
    mask = np.zeros((size, size), np.uint8)
    for outline in shape.outlines:
        cv2.fillPoly(mask, [fixed_point(pose.to_pixels(outline))], 255, cv2.LINE_AA, SUBPIXEL_BITS)
    vein_mask = np.zeros((size, size), np.uint8)
    for line, width in shape.stems:
        pixels = [fixed_point(pose.to_pixels(line))]
        thickness = max(1, round(width * scale))
        cv2.polylines(mask, pixels, False, 255, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.polylines(vein_mask, pixels, False, 200, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
    for line, strength, width in shape.veins:
        thickness = max(1, round(width * scale))
        cv2.polylines(vein_mask, [fixed_point(pose.to_pixels(line))], False, int(255 * strength), thickness,
                      cv2.LINE_AA, SUBPIXEL_BITS)
    alpha = mask.astype(np.float32) / 255
    edge_distance = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)

    colour_jitter = rng.uniform(0.88, 1.12) * rng.uniform(0.94, 1.06, 3)
    leaf_base = np.clip(np.asarray(base_colour) * colour_jitter, 0, 1).astype(np.float32)
    shading = 0.88 + 0.24 * smooth_noise(rng, size, 5)
    # Margins a little darker, so the blade reads as curved rather than flat.
    shading *= 0.8 + 0.2 * np.clip(edge_distance / (0.06 * size), 0, 1)
    colour = leaf_base * shading[..., None]
    if glossy:
        sheen = np.clip(smooth_noise(rng, size, 3) - 0.55, 0, None) * 1.2
        blend(colour, sheen, (0.85, 0.92, 0.8))
    veins = vein_mask.astype(np.float32) / 255
    blend(colour, 0.5 * veins, np.clip(leaf_base * 1.35 + 0.08, 0, 1))
    inside_y, inside_x = np.nonzero(mask > 127)
    if len(inside_x) == 0:  # leaf thinner than a pixel at tiny sizes: let lesions land at the centre
        inside_y, inside_x = np.array([size // 2]), np.array([size // 2])
    return Leaf(rng, size, colour, alpha, edge_distance, veins, pose, inside_x, inside_y)

