"""Disease painters: each paints its disease on leaf.colour (shown only where the leaf is), from irregular lesions,
soft regions, margin blights or mottles; the severity scales the diseased area."""
import math

import cv2
import numpy as np

from leafdisease.data.demo_data.raster import (
    SUBPIXEL_BITS,
    blend,
    fixed_point,
    gaussian_blur,
    pixel_grid,
    smooth_noise,
    smoothstep,
)

# Diseased area of a "serious" leaf relative to a "general" one; unsplit diseases sit in between.
_EXTENT = {"general": 1.0, "serious": 3.0, None: 1.7}


class _Lesions:
    """Irregular lesion outlines at random leaf positions, drawable at several scales (halo, rim, centre)."""

    def __init__(self, leaf, count, radius, extent, roughness=0.3, elongation=1.0, aligned=False):
        rng = leaf.rng
        self.leaf = leaf
        count = max(1, round(count * math.sqrt(extent) * rng.uniform(0.75, 1.3)))
        self.x, self.y = leaf.random_points(count)
        self.radius = radius * leaf.size * extent**0.25 * rng.uniform(0.85, 1.15) * rng.lognormal(0, 0.2, count)
        vertices = 10
        self.angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
        self.angles = self.angles + rng.uniform(-0.2, 0.2, (count, vertices))
        self.factors = 1 + roughness * rng.uniform(-1, 1, (count, vertices))
        self.orientation = (
            np.full(count, math.radians(leaf.pose.axis_degrees)) if aligned else rng.uniform(0, np.pi, count)
        )
        self.elongation = elongation

    def __len__(self):
        return len(self.x)

    def layer(self, scale=1.0, blur=0.0):
        size = self.leaf.size
        layer = np.zeros((size, size), np.uint8)
        for i in range(len(self)):
            r = self.radius[i] * scale * self.factors[i]
            along, across = r * np.cos(self.angles[i]) * self.elongation, r * np.sin(self.angles[i])
            c, s = math.cos(self.orientation[i]), math.sin(self.orientation[i])
            outline = np.stack([self.x[i] + c * along - s * across, self.y[i] + s * along + c * across], axis=1)
            cv2.fillPoly(layer, [fixed_point(outline)], 255, cv2.LINE_AA, SUBPIXEL_BITS)
        return gaussian_blur(layer.astype(np.float32) / 255, blur * size)

    def rings(self, count, thickness_fraction=0.0):
        """Concentric ring lines inside each lesion (target spots)."""
        size = self.leaf.size
        layer = np.zeros((size, size), np.uint8)
        for i in range(len(self)):
            thickness = max(1, round(thickness_fraction * self.radius[i]))
            for k in range(1, count + 1):
                axes = self.radius[i] * k / (count + 0.5)
                axes = fixed_point((axes * self.elongation, axes))
                cv2.ellipse(layer, tuple(fixed_point((self.x[i], self.y[i]))), tuple(int(a) for a in axes),
                            math.degrees(self.orientation[i]), 0, 360, 255, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
        return layer.astype(np.float32) / 255

    def dots(self, per_lesion, spread, dot_radius):
        """Small dark dots inside each lesion (fruiting bodies, aecia)."""
        rng, size = self.leaf.rng, self.leaf.size
        layer = np.zeros((size, size), np.uint8)
        radius = max(1, round(dot_radius * size)) if dot_radius * size >= 0.8 else 0
        for i in range(len(self)):
            n = max(1, round(per_lesion * (self.radius[i] / (0.04 * size)) ** 2))
            angle = rng.uniform(0, 2 * np.pi, n)
            distance = self.radius[i] * spread * np.sqrt(rng.random(n))
            for x, y in zip(self.x[i] + distance * np.cos(angle), self.y[i] + distance * np.sin(angle)):
                cv2.circle(layer, (int(x), int(y)), radius, 255, -1)
        return layer.astype(np.float32) / 255


_YELLOW_HALO = (0.78, 0.76, 0.22)
_DARK_BROWN = (0.26, 0.16, 0.08)
_TAN = (0.68, 0.56, 0.38)


def _healthy(leaf, extent):
    pass


def _apple_scab(leaf, extent):
    # Olive-brown to black velvety spots with feathery edges.
    spots = _Lesions(leaf, 7, 0.028, extent, roughness=0.45)
    blend(leaf.colour, 0.45 * spots.layer(1.8, blur=0.015), _YELLOW_HALO)
    blend(leaf.colour, 0.92 * spots.layer(1.0, blur=0.008), (0.2, 0.22, 0.1))


def _frogeye_spot(leaf, extent):
    # Tan centre with a purple-brown rim, the "frog eye".
    spots = _Lesions(leaf, 5, 0.032, extent, roughness=0.12)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.42, 0.16, 0.2))
    blend(leaf.colour, 0.95 * spots.layer(0.68), (0.76, 0.66, 0.48))


def _cedar_rust(leaf, extent):
    # Bright orange spots, red rim, yellow halo, black dots (aecia) in the middle.
    spots = _Lesions(leaf, 4, 0.035, extent, roughness=0.12)
    blend(leaf.colour, 0.7 * spots.layer(1.6, blur=0.015), (0.92, 0.78, 0.2))
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.8, 0.28, 0.06))
    blend(leaf.colour, 0.95 * spots.layer(0.75), (0.98, 0.6, 0.08))
    blend(leaf.colour, 0.9 * spots.dots(4, 0.55, 0.005), (0.1, 0.06, 0.04))


def _powdery_mildew(leaf, extent):
    # White powdery patches with a grainy texture.
    patches = leaf.region(smooth_noise(leaf.rng, leaf.size, 7), 0.14 * extent * leaf.rng.uniform(0.8, 1.2), 0.2)
    grain = 0.4 + 0.6 * leaf.rng.random((leaf.size, leaf.size), dtype=np.float32)
    blend(leaf.colour, 0.75 * gaussian_blur(patches * grain, 0.005 * leaf.size), (0.86, 0.88, 0.84))


def _gray_leaf_spot(leaf, extent):
    # Narrow rectangular grey-tan lesions running between the parallel veins.
    spots = _Lesions(leaf, 6, 0.016, extent, roughness=0.05, elongation=3.8, aligned=True)
    blend(leaf.colour, 0.9 * spots.layer(1.15), (0.45, 0.42, 0.32))
    blend(leaf.colour, 0.9 * spots.layer(0.85), (0.66, 0.64, 0.56))


def _corn_rust(leaf, extent):
    # Many small cinnamon-orange pustules.
    pustules = _Lesions(leaf, 40, 0.009, extent, roughness=0.2, elongation=1.6, aligned=True)
    blend(leaf.colour, 0.95 * pustules.layer(1.0), (0.78, 0.4, 0.1))


def _corn_leaf_spot(leaf, extent):
    # Oval tan spots with a dark-brown rim and a yellow halo.
    spots = _Lesions(leaf, 7, 0.022, extent, roughness=0.15, elongation=1.6, aligned=True)
    blend(leaf.colour, 0.6 * spots.layer(1.7, blur=0.01), _YELLOW_HALO)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.36, 0.22, 0.1))
    blend(leaf.colour, 0.95 * spots.layer(0.65), _TAN)


def _dwarf_mosaic(leaf, extent):
    # Pale streaks running along the veins, broken into dashes.
    xs, ys = pixel_grid(leaf.size)
    angle = math.radians(leaf.pose.axis_degrees)
    across = (-(xs - leaf.size / 2) * math.sin(angle) + (ys - leaf.size / 2) * math.cos(angle)) / leaf.size
    phase = 2 * np.pi * smooth_noise(leaf.rng, leaf.size, 3)
    streaks = np.clip(np.sin(across * 2 * np.pi * 14 + phase), 0, 1)
    dashes = smoothstep((smooth_noise(leaf.rng, leaf.size, 9) - 0.35) * 4)
    blend(leaf.colour, 0.85 * streaks * dashes, (0.8, 0.84, 0.42))


def _black_rot(leaf, extent):
    # Round reddish-tan lesions, dark-brown rim, a ring of black fruiting bodies.
    spots = _Lesions(leaf, 4, 0.038, extent, roughness=0.1)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.3, 0.14, 0.07))
    blend(leaf.colour, 0.95 * spots.layer(0.82), (0.62, 0.42, 0.26))
    blend(leaf.colour, 0.9 * spots.dots(6, 0.75, 0.004), (0.08, 0.05, 0.04))


def _black_measles(leaf, extent):
    # "Tiger stripes": tissue between the veins yellows then browns, the veins stay green.
    from_veins = cv2.distanceTransform((leaf.veins < 0.15).astype(np.uint8), cv2.DIST_L2, 3)
    between_veins = np.minimum(from_veins, leaf.edge_distance) / (0.012 * leaf.size)
    patches = leaf.region(smooth_noise(leaf.rng, leaf.size, 5), 0.22 * extent * leaf.rng.uniform(0.8, 1.2), 0.08)
    blend(leaf.colour, 0.85 * patches * smoothstep(between_veins - 0.3), (0.82, 0.66, 0.2))
    blend(leaf.colour, 0.85 * patches * smoothstep(between_veins - 1.3), (0.55, 0.2, 0.1))


def _margin_blight(leaf, fraction, core_colour, rim_colour, halo_colour=None):
    """Dead tissue spreading in from one side of the margin: a mottled core, a dark rim along its advancing
    edge and, for some diseases, a pale halo in the living tissue ahead of it."""
    xs, ys = pixel_grid(leaf.size)
    direction = leaf.rng.uniform(0, 2 * np.pi)
    side = (xs * math.cos(direction) + ys * math.sin(direction)) / leaf.size
    depth = leaf.edge_distance / max(1.0, float(leaf.edge_distance.max()))
    front = 0.6 * depth + 1.5 * side + 0.6 * smooth_noise(leaf.rng, leaf.size, 6)
    threshold = leaf.quantile_inside(front, fraction)
    ahead = (front - threshold) / 0.025  # 0 on the advancing edge, positive in living tissue
    if halo_colour is not None:
        blend(leaf.colour, 0.7 * np.exp(-(((ahead - 1.5) / 1.2) ** 2)), halo_colour)
    mottle = 0.6 + 0.8 * smooth_noise(leaf.rng, leaf.size, 12)
    blend(leaf.colour, 0.95 * smoothstep(0.5 - ahead), np.asarray(core_colour, np.float32) * mottle[..., None])
    blend(leaf.colour, 0.85 * np.exp(-(((ahead + 0.3) / 0.6) ** 2)), rim_colour)


def _leaf_blight(leaf, extent):
    # Reddish-brown dead margins with a dark edge.
    _margin_blight(leaf, 0.13 * extent * leaf.rng.uniform(0.8, 1.2), (0.5, 0.26, 0.12), (0.22, 0.1, 0.05))


def _late_blight(leaf, extent):
    # Dark, water-soaked greyish-brown blight, black edge, pale yellow-green border ahead of it.
    _margin_blight(leaf, 0.13 * extent * leaf.rng.uniform(0.8, 1.2), (0.3, 0.2, 0.1), (0.08, 0.07, 0.04),
                   (0.66, 0.72, 0.36))


def _greening(leaf, extent):
    # Blotchy, asymmetric yellow mottle and yellowed veins.
    blotches = leaf.region(smooth_noise(leaf.rng, leaf.size, 5), 0.2 * extent * leaf.rng.uniform(0.8, 1.2), 0.1)
    blend(leaf.colour, 0.8 * blotches, (0.78, 0.74, 0.26))
    blend(leaf.colour, 0.7 * leaf.veins * min(1.0, 0.4 * extent), (0.88, 0.84, 0.4))


def _bacterial_spot(leaf, extent):
    # Small dark greasy spots, each with a yellow halo.
    spots = _Lesions(leaf, 16, 0.012, extent, roughness=0.3)
    blend(leaf.colour, 0.75 * spots.layer(2.2, blur=0.006), _YELLOW_HALO)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.14, 0.1, 0.08))


def _peach_bacterial_spot(leaf, extent):
    # Small angular purple-black spots with a yellow halo.
    spots = _Lesions(leaf, 14, 0.013, extent, roughness=0.45)
    blend(leaf.colour, 0.65 * spots.layer(2.0, blur=0.006), _YELLOW_HALO)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.3, 0.1, 0.16))


def _pepper_scab(leaf, extent):
    # Raised, corky brown scabs with light centres.
    spots = _Lesions(leaf, 8, 0.024, extent, roughness=0.5)
    blend(leaf.colour, 0.35 * spots.layer(1.6, blur=0.01), _YELLOW_HALO)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.46, 0.3, 0.16))
    blend(leaf.colour, 0.85 * spots.layer(0.5, blur=0.004), (0.8, 0.72, 0.55))


def _early_blight(leaf, extent):
    # Few large dark-brown lesions with concentric rings and a yellow halo.
    spots = _Lesions(leaf, 3, 0.05, extent, roughness=0.25)
    blend(leaf.colour, 0.7 * spots.layer(1.45, blur=0.02), _YELLOW_HALO)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.38, 0.26, 0.13))
    blend(leaf.colour, 0.9 * spots.rings(3, 0.08) * spots.layer(0.98), (0.16, 0.1, 0.05))


def _target_spot(leaf, extent):
    # More, smaller light-tan lesions with fine dark rings and no halo.
    spots = _Lesions(leaf, 6, 0.03, extent, roughness=0.1)
    blend(leaf.colour, 0.95 * spots.layer(1.0), (0.72, 0.6, 0.42))
    blend(leaf.colour, 0.8 * spots.rings(3) * spots.layer(0.98), (0.35, 0.22, 0.12))


def _septoria(leaf, extent):
    # Many small spots: grey-white centre, dark-brown rim, no halo.
    spots = _Lesions(leaf, 16, 0.015, extent, roughness=0.2)
    blend(leaf.colour, 0.95 * spots.layer(1.0), _DARK_BROWN)
    blend(leaf.colour, 0.95 * spots.layer(0.6), (0.84, 0.82, 0.74))


def _leaf_mold(leaf, extent):
    # Diffuse pale-yellow blotches with olive velvety centres.
    blotches = _Lesions(leaf, 3, 0.07, extent, roughness=0.5)
    blend(leaf.colour, 0.75 * blotches.layer(1.3, blur=0.03), (0.8, 0.8, 0.36))
    blend(leaf.colour, 0.65 * blotches.layer(0.65, blur=0.02), (0.44, 0.42, 0.18))


def _spider_mite(leaf, extent):
    # Fine pale stippling with bronzing over the infested part of the leaf.
    infested = leaf.region(smooth_noise(leaf.rng, leaf.size, 4), 0.25 * extent * leaf.rng.uniform(0.8, 1.2), 0.15)
    speckles = (leaf.rng.random((leaf.size, leaf.size), dtype=np.float32) < 0.3).astype(np.float32)
    blend(leaf.colour, 0.3 * infested, (0.62, 0.56, 0.3))
    blend(leaf.colour, 0.65 * speckles * infested, (0.9, 0.9, 0.62))


def _yellow_leaf_curl(leaf, extent):
    # Yellow margins spreading inwards (the curled, narrowed leaflets come from the outline builder).
    width = 0.035 * extent * leaf.size * leaf.rng.uniform(0.8, 1.2)
    margin = smoothstep(1.3 - leaf.edge_distance / width)
    blend(leaf.colour, 0.85 * margin, (0.8, 0.78, 0.25))
    blend(leaf.colour, np.full_like(margin, 0.12 * extent), (0.7, 0.72, 0.3))


def _mosaic_virus(leaf, extent):
    # Light and dark green mottle.
    mottle = smooth_noise(leaf.rng, leaf.size, 9)
    blend(leaf.colour, 0.75 * smoothstep((mottle - 0.5) * 4), (0.62, 0.74, 0.3))
    blend(leaf.colour, 0.5 * smoothstep((0.45 - mottle) * 4), (0.12, 0.3, 0.08))


def _strawberry_scorch(leaf, extent):
    # Many small purple spots merging, and scorched margins.
    spots = _Lesions(leaf, 16, 0.012, extent, roughness=0.4)
    blend(leaf.colour, 0.9 * spots.layer(1.0), (0.4, 0.12, 0.22))
    _margin_blight(leaf, 0.06 * extent * leaf.rng.uniform(0.8, 1.2), (0.45, 0.27, 0.17), (0.42, 0.14, 0.24))


# (crop, disease) -> disease painter
_PAINTERS = {
    "healthy": _healthy,
    ("Apple", "scab"): _apple_scab,
    ("Apple", "frogeye_spot"): _frogeye_spot,
    ("Apple", "cedar_rust"): _cedar_rust,
    ("Cherry", "powdery_mildew"): _powdery_mildew,
    ("Corn", "gray_leaf_spot"): _gray_leaf_spot,
    ("Corn", "rust"): _corn_rust,
    ("Corn", "leaf_spot"): _corn_leaf_spot,
    ("Corn", "dwarf_mosaic"): _dwarf_mosaic,
    ("Grape", "black_rot"): _black_rot,
    ("Grape", "black_measles"): _black_measles,
    ("Grape", "leaf_blight"): _leaf_blight,
    ("Citrus", "greening"): _greening,
    ("Peach", "bacterial_spot"): _peach_bacterial_spot,
    ("Pepper", "scab"): _pepper_scab,
    ("Potato", "early_blight"): _early_blight,
    ("Potato", "late_blight"): _late_blight,
    ("Strawberry", "scorch"): _strawberry_scorch,
    ("Tomato", "powdery_mildew"): _powdery_mildew,
    ("Tomato", "bacterial_spot"): _bacterial_spot,
    ("Tomato", "early_blight"): _early_blight,
    ("Tomato", "late_blight"): _late_blight,
    ("Tomato", "leaf_mold"): _leaf_mold,
    ("Tomato", "target_spot"): _target_spot,
    ("Tomato", "septoria_leaf_spot"): _septoria,
    ("Tomato", "spider_mite"): _spider_mite,
    ("Tomato", "yellow_leaf_curl"): _yellow_leaf_curl,
    ("Tomato", "mosaic_virus"): _mosaic_virus,
}
# (disease, severity) -> leaf_curl
_CURL = {("yellow_leaf_curl", "general"): 0.45, ("yellow_leaf_curl", "serious"): 1.0, ("mosaic_virus", None): 0.2}


def leaf_curl(disease, severity):
    """How curled and narrowed the leaflets of a leaf with this disease are: 0 flat .. 1 tightly curled."""
    return _CURL.get((disease, severity), 0.0)


def paint_disease(leaf, crop, disease, severity):
    """Paint the crop's disease (nothing for "healthy") on `leaf` at the severity's extent."""
    painter = _PAINTERS["healthy" if disease == "healthy" else (crop, disease)]
    painter(leaf, _EXTENT[severity])
