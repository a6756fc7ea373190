"""Serving docked devices and inbox folders: mount, ingest, (opt-in) wipe, unmount."""
