"""Offline training of the product's own networks (``convlens style train``). Kept out of
``convlens/techniques/``, whose every module the registry imports at start-up: a server loads no training code."""
