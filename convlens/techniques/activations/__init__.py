"""Activations family: image or nothing → named grids (activation maps, filter galleries)."""
