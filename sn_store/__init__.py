"""sn_store: find Super Neurons in vision-language models and turn them into early-exit classifiers.

The Python API mirrors the CLI: `sn_store.extract(...)`, `sn_store.open_store(path)`, `sn_store.load_model(...)`,
`sn_store.load_dataset(...)`, `sn_store.search(path)`.
"""

__version__ = "0.1.0"

from .errors import SnError  # noqa: E402
from .datasets import load_dataset  # noqa: E402
from .models import load_model  # noqa: E402
from .store import open_store  # noqa: E402
from .extract import extract  # noqa: E402  (binds the function over the submodule of the same name)
from .search import search  # noqa: E402

__all__ = ["SnError", "__version__", "extract", "load_dataset", "load_model", "open_store", "search"]
