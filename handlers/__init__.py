"""TorchServe handlers of ConvLens: one thin handler per endpoint on a shared base.

``classify.py`` → ``/predictions/classify``, ``saliency.py`` → ``/predictions/saliency``.
``serve/archives.py`` packages each of them with ``torch-model-archiver``.
"""
