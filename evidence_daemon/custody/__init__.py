"""Chain of custody: the hash-chained, Ed25519-signed ledger and offline verification."""
