"""The built-in offline model: a procedural shapes-and-textures dataset, a small CNN, its training."""

from convlens.builtin.dataset import CLASSES, IMAGE_SIZE
from convlens.builtin.net import MEAN, STD, BuiltinNet
from convlens.builtin.train import CHECKPOINT_PATH, load_checkpoint

__all__ = ["CHECKPOINT_PATH", "CLASSES", "IMAGE_SIZE", "MEAN", "STD", "BuiltinNet", "load_checkpoint"]
