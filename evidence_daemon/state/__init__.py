"""Local state: the SQLite work queue and catalog (rebuildable from the archive)."""
