"""Serving ConvLens with TorchServe: archive building (``archives.py``), process management
(``server.py``), the base ``config.properties`` and per-model YAML in ``model-config/``."""
