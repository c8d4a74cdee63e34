"""Service processes for the kill -9 tests (each module's ``main(args)`` runs one life)."""
