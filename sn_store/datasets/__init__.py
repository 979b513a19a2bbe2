"""Dataset specs, format readers (a registry keyed by `format`), the synthetic suite, validated samples."""

from . import benchmarks, vlmevalkit  # noqa: F401  (they register their formats)
from .dataset import Dataset, Sample, builtin_specs, load_dataset, resolve_spec, with_source
from .formats import READERS
from .spec import DatasetSpec, load_spec_file, parse_spec
from .synthetic import TASKS

__all__ = [
           "READERS",
           "TASKS",
           "Dataset",
           "DatasetSpec",
           "Sample",
           "builtin_specs",
           "load_dataset",
           "load_spec_file",
           "parse_spec",
           "resolve_spec",
           "with_source",
]
