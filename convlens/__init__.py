"""ConvLens core: what a convolutional network has learned, and why it decides.

Pure PyTorch: no HTTP, no serving, no UI. Start with :func:`convlens.models.load_model`, then run any
technique of :func:`convlens.registry.registry` with :func:`convlens.pipeline.run` (or an attribution
technique on one image with :func:`convlens.pipeline.explain`). A technique is one module under
``convlens/techniques/`` declared with :func:`convlens.registry.technique`.
"""

__version__ = "0.1.0"
