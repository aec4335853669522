"""Your own models: a model is a folder with a ``model.toml`` manifest (see ``docs/models.md``).

    models_dir()                   $CONVLENS_MODELS_DIR or <data root>/models
    list_models() -> [Entry]       every folder, available or unavailable with the reason
    add(name, source, weights_path, classes, ...) -> ModelCard     checked in a .tmp- folder, renamed in
    load(name) -> (nn.Module, ModelCard)   eval mode, frozen, ready for the techniques
    show(name) / remove(name) / check(folder) / open_model(folder) / cache_key(folder)

Every refusal is a :class:`ManifestError` (a :class:`convlens.schema.SchemaError`) naming the field.
"""

from convlens.zoo.check import ModelCard, check, open_model
from convlens.zoo.manifest import (
    MAX_CLASS_CHARS,
    MAX_CLASSES,
    MAX_MANIFEST_BYTES,
    MAX_WEIGHTS_BYTES,
    MODELS_DIR_ENV,
    Manifest,
    ManifestError,
    check_name,
    models_dir,
    parse_manifest,
)
from convlens.zoo.store import (
    SHIPPED_DIR,
    Entry,
    add,
    cache_key,
    inspect,
    list_models,
    load,
    locate,
    remove,
    shipped_names,
    show,
)
from convlens.zoo.weights import sha256_file

__all__ = [
    "MAX_CLASSES", "MAX_CLASS_CHARS", "MAX_MANIFEST_BYTES", "MAX_WEIGHTS_BYTES", "MODELS_DIR_ENV",
    "Entry", "Manifest", "ManifestError", "ModelCard",
    "add", "cache_key", "check", "check_name", "inspect", "list_models", "load", "models_dir", "open_model",
    "parse_manifest", "remove", "sha256_file", "show", "locate", "shipped_names", "SHIPPED_DIR",
]
