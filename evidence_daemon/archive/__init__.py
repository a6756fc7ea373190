"""The archive: the system of record (storage contract in docs/architecture.md)."""
