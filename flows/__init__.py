"""Prefect flows: thin orchestration over the sn_store library (no math here)."""
