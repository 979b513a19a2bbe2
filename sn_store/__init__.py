"""sn_store: find Super Neurons in vision-language models and turn them into early-exit classifiers.

The Python API mirrors the CLI: `sn_store.extract(...)`, `sn_store.open_store(path)`, `sn_store.load_model(...)`,
`sn_store.load_dataset(...)`, `sn_store.search(path)`.
"""

__version__ = "0.1.0"

from .datasets import load_dataset
from .errors import SnError
from .extract import extract
from .models import load_model
from .search import search
from .store import open_store

__all__ = ["SnError", "__version__", "extract", "load_dataset", "load_model", "open_store", "search"]
