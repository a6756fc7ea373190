"""Incidents from dispatch records, their footage coverage, and review samples."""
