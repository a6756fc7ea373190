"""Docked devices: the registry of recorders and terminals, their officer assignments, and
which officer a recording is attributed to (pure rules in ``attribution``)."""
