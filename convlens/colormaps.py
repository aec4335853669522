"""The colour maps heat maps are drawn with, as anchor colours linearly interpolated (matplotlib's data,
sampled). Standard library only: the server colours maps with them (:func:`convlens.images.colormap`) and the
dashboard draws the matching colour bars (value range beside every heat map)."""

from __future__ import annotations

COLORMAP_ANCHORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "inferno": (
        (0.001, 0.000, 0.014),
        (0.122, 0.047, 0.282),
        (0.336, 0.060, 0.430),
        (0.545, 0.134, 0.415),
        (0.735, 0.216, 0.330),
        (0.891, 0.347, 0.198),
        (0.978, 0.557, 0.035),
        (0.975, 0.800, 0.252),
        (0.988, 0.998, 0.645),
    ),
    "viridis": (
        (0.267, 0.005, 0.329),
        (0.283, 0.141, 0.458),
        (0.254, 0.265, 0.530),
        (0.207, 0.372, 0.553),
        (0.164, 0.471, 0.558),
        (0.128, 0.567, 0.551),
        (0.135, 0.659, 0.518),
        (0.267, 0.749, 0.441),
        (0.478, 0.821, 0.318),
        (0.741, 0.873, 0.150),
        (0.993, 0.906, 0.144),
    ),
    "jet": (
        (0.0, 0.0, 0.5),
        (0.0, 0.0, 1.0),
        (0.0, 0.5, 1.0),
        (0.0, 1.0, 1.0),
        (0.5, 1.0, 0.5),
        (1.0, 1.0, 0.0),
        (1.0, 0.5, 0.0),
        (1.0, 0.0, 0.0),
        (0.5, 0.0, 0.0),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


# Signed maps (convlens.images.diverging): blue at -max |v|, white at 0, red at +max |v|, linear in between.
DIVERGING = "diverging"
SIGNED_ANCHORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    DIVERGING: ((0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0))}


def plotly_scale(name: str) -> list[tuple[float, str]]:
    """Colour map ``name`` (a heat map's or :data:`DIVERGING`) as a plotly colorscale: its anchors at equal steps,
    exactly as the server interpolates."""
    anchors = {**COLORMAP_ANCHORS, **SIGNED_ANCHORS}[name]
    step = 1 / (len(anchors) - 1)
    return [(k * step, "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * c for c in rgb))) for k, rgb in enumerate(anchors)]
