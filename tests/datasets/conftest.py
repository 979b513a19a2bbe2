import pytest

from .fixtures import build


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """Every benchmark fixture, built once per session."""
    return build(tmp_path_factory.mktemp("benchmarks"))
