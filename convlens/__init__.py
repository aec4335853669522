"""ConvLens core: what a convolutional network has learned, and why it decides.

Pure PyTorch: no HTTP, no serving, no UI. Start with :func:`convlens.models.load_model`
and :func:`convlens.explain.explain`.
"""

__version__ = "0.1.0"
