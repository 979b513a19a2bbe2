"""sn_store: find Super Neurons in vision-language models and turn them into early-exit classifiers.

The Python API mirrors the CLI: `sn_store.extract(...)`, `sn_store.open_store(path)`, `sn_store.load_model(...)`,
`sn_store.load_dataset(...)`, `sn_store.search(path)`.

The API functions are imported on first use (PEP 562), so `import sn_store` (and the `sn` command) does not pay for
torch, transformers and xarray until a function that needs them is called.
"""

import importlib
import sys
import types

from .errors import SnError

__version__ = "0.2.0"

# Public name -> the submodule that defines it.
_API = {
    "extract": ".extract",
    "load_dataset": ".datasets",
    "load_model": ".models",
    "open_store": ".store",
    "search": ".search",
}

__all__ = ["SnError", "__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    """`sn_store.extract` and `sn_store.search` are both a function and a submodule. Importing a submodule binds it on
    the package after it has run, which would hide the function: bind the function of the same name instead."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
