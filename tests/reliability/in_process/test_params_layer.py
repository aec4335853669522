"""``params.layer`` is the request's ``layer`` spelled as a param: checked the same way, refused naming it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.handlers.conftest import call, json_row, png_bytes


@pytest.mark.parametrize("layer", ["", "nope", "features.3\n", 5, ["features.3"]], ids=repr)
def test_a_bad_params_layer_is_a_400_naming_it(saliency_handler: Any, layer: Any) -> None:
    [(status, body)] = call(saliency_handler, [json_row(png_bytes(), params={"method": "guided", "layer": layer})])
    assert (status, body["field"]) == (400, "params.layer"), body


def test_params_layer_is_used_and_must_agree_with_layer(saliency_handler: Any) -> None:
    [(status, body)] = call(saliency_handler, [json_row(png_bytes(), params={"method": "gradcam",
                                                                              "layer": "features.3"})])
    assert status == 200 and body["layer"] == "features.3", body
    [(status, body)] = call(saliency_handler, [json_row(png_bytes(), layer="features.0",
                                                        params={"method": "gradcam", "layer": "features.3"})])
    assert (status, body["field"]) == (400, "params.layer"), body
