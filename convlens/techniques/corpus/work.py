"""How much work a corpus request is: whether it can outlive a server's response timeout, so that the server runs
it as a job (answered at once with an id; see docs/serving.md). Each params class that can be long says so with
a ``runs_long()`` method; these are the sizes above which it does."""

from __future__ import annotations

SYNC_MAX_BUILTIN_IMAGES = 2000  # built-in dataset images made synchronously (~500 a second)
SYNC_MAX_ARCHIVE_CHARS = 1 << 20  # base64 characters of a zip imported synchronously
SYNC_MAX_DATASET_IMAGES = 5000  # dataset size whose codes (embedding, neighbours, top patches) are synchronous
SYNC_MAX_FAITHFULNESS_IMAGES = 10  # held-out images of a synchronous faithfulness measurement


class OverADataset:
    """Mixin of the params of a request over every image of ``dataset`` (its codes are computed if not cached)."""

    dataset: str

    def runs_long(self) -> bool:
        from convlens.corpus import datasets as store

        return len(store.open_dataset(self.dataset)) > SYNC_MAX_DATASET_IMAGES
