"""`prefect_server` lives in tests/conftest.py: one server for the whole session."""
