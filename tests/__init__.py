"""The test suite (run with nox -s tests; helpers in tests.helpers)."""
