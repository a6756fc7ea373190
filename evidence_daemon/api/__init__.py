"""The auditors' retrieval API: a separate, read-mostly process over the archive.

It never reads a station's database. Its catalog is an index of the archive's manifests and
ledgers (``indexer``), its users hold hashed bearer tokens (``auth``), and every content access
is a signed ``accessed`` event in this node's own ledger before the first byte leaves.
"""
