import pytest


@pytest.fixture(scope="session")
def prefect_server():
    """One real temporary Prefect server (Prefect's own test harness) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
