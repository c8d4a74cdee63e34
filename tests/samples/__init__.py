"""Deterministic sample data shared by tests (built from the real contracts and types)."""
