"""sn_store: find Super Neurons in vision-language models and turn them into early-exit classifiers."""

__version__ = "0.1.0"

from .errors import SnError  # noqa: E402


def __getattr__(name: str):
    # The public API, imported lazily so that `import sn_store` (and `sn --help`) stays fast.
    if name == "extract":
        from .extract import extract

        return extract
    if name == "open_store":
        from .store import open_store

        return open_store
    if name in ("load_model", "load_dataset"):
        from . import datasets, models

        return getattr(models if name == "load_model" else datasets, name)
    raise AttributeError(name)


__all__ = ["SnError", "__version__", "extract", "open_store", "load_model", "load_dataset"]
