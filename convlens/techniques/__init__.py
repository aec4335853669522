"""Every technique of ConvLens, one module each, grouped by family; discovered by :mod:`convlens.registry`."""
