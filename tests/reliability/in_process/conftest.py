"""The hostile-client catalogue's in-process part: each endpoint's handler called without TorchServe, with the
handler tests' fixtures (no ImageNet weights, a fresh datasets directory)."""

from tests.handlers.conftest import classify_handler, data_dir, no_imagenet_weights, saliency_handler  # noqa: F401
