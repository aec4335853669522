"""The one HTTP client of ConvLens and the commands that talk to the API.

``client.http`` is used by the dashboard and by ``convlens call``; it imports only
``convlens.schema`` from the core (standard library, no torch), so it is cheap to import.
"""

from client.http import (
    ApiError,
    ApiStatus,
    ConvLensClient,
    LayerCatalogue,
    LayerRow,
    ModelEntry,
    ModelFiles,
    ModelInfo,
    TechniqueInfo,
)

__all__ = ["ApiError", "ApiStatus", "ConvLensClient", "LayerCatalogue", "LayerRow", "ModelEntry", "ModelFiles",
           "ModelInfo", "TechniqueInfo"]
