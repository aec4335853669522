"""A request's images, from bytes to RGB images, at the cost the worker can afford.

Every image's header is read first (nothing decoded), the request's total is checked and reserved against
:mod:`handlers.pixel_budget`, and only then is each image decoded, one at a time, and reduced at once to the
shorter side the request's model and technique family need (:func:`decode_side`): a 5000×5000 upload held
for a 64-pixel model costs its full size only while it is being decoded (a JPEG not even then: it decodes at a
DCT draft scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convlens import models as zoo
from convlens.images import ImageDecodeError, OpenedImage, decode_opened, open_image
from convlens.schema import MAX_SYNTHESIS_INPUT_SIDE, SchemaError
from convlens.zoo.manifest import MAX_RESIZE_SIZE
from handlers import pixel_budget

SYNTHESIS_SIDE = MAX_SYNTHESIS_INPUT_SIDE  # the synthesis family keeps uploads up to this longer side


def decode_side(model: str, family: str) -> int:
    """The shorter side an upload is reduced to (never enlarged): what the model's preprocessing resizes to (a
    registered model: the largest a model card may ask for), and for the synthesis family at least the side its
    techniques keep."""
    side = zoo.get_spec(model).preprocessing.resize_size if model in zoo.REGISTRY else MAX_RESIZE_SIZE
    return max(side, SYNTHESIS_SIDE) if family == "synthesis" else side


def _field(name: str, k: int, is_list: bool) -> str:
    return f"{name}.{k}" if is_list else name


def open_all(images: Mapping[str, bytes | list[bytes]], short_side: int) -> dict[str, list[OpenedImage]]:
    """Every image's header, checked (a bad one is a SchemaError naming it, e.g. ``images.3``)."""
    opened: dict[str, list[OpenedImage]] = {}
    for name, data in images.items():
        items = data if isinstance(data, list) else [data]
        opened[name] = []
        for k, item in enumerate(items):
            try:
                opened[name].append(open_image(item, short_side=short_side))
            except ImageDecodeError as exc:
                raise SchemaError(_field(name, k, isinstance(data, list)), str(exc)) from None
    return opened


def decode_inputs(images: Mapping[str, bytes | list[bytes]], short_side: int,
                  budget: pixel_budget.PixelBudget, limit: int) -> tuple[dict[str, Any], int]:
    """(decoded inputs — an image, or a list for a list input —, pixels reserved from ``budget``). Raises
    SchemaError for a bad image, :class:`pixel_budget.Refused` over the limits; on failure nothing stays
    reserved."""
    opened = open_all(images, short_side)
    sizes = [(name, one.pixels) for name, items in opened.items() for one in items]
    reserved = pixel_budget.reserve(sizes, budget, limit)
    try:
        inputs: dict[str, Any] = {}
        for name, items in opened.items():
            decoded = []
            for k, one in enumerate(items):
                try:
                    decoded.append(decode_opened(one))
                except ImageDecodeError as exc:
                    raise SchemaError(_field(name, k, isinstance(images[name], list)), str(exc)) from None
            inputs[name] = decoded if isinstance(images[name], list) else decoded[0]
    except BaseException:
        budget.release(reserved)
        raise
    return inputs, reserved
