"""Where docked devices come from: udev events, their matching rules, and read-only mounts.

``rules`` holds the pure decisions (is this device a recorder? what is its identity?), ``udev``
turns kernel uevents into "media added/removed" reports, ``mounter`` mounts a device read-only
and proves it is. Nothing here reads a file off a device; that is ``ingest``'s job.
"""
