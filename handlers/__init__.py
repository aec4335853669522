"""TorchServe handlers of ConvLens: one thin handler per endpoint on a shared base.

Each endpoint of :func:`convlens.registry.all_endpoints` is served by its family's handler
(``prediction.py``, ``attribution.py``, ``activations.py``, ``synthesis.py``, ``corpus.py``), all on
``base.py``; ``serve/archives.py`` packages each endpoint with ``torch-model-archiver``.
"""
