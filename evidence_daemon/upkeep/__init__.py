"""Scheduled upkeep inside ``evidence-daemon run`` (APScheduler jobs)."""
