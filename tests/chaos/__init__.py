"""Fault-injection tests (marker ``chaos``) and the reliability ledger they feed."""
