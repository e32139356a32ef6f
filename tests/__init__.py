"""engram test suite."""
