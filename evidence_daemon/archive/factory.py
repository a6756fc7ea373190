"""The archive backend a configuration names: the one place that picks it.

Stations, API nodes and the offline commands (verify, checkpoint, review recompute) all open
the archive through ``build_store``; the minio SDK is imported only for ``backend = "s3"``.
"""

from __future__ import annotations

from ..config import Config
from .base import ArchiveStore
from .filesystem import FilesystemArchive
from .link import Throttle


def build_store(config: Config) -> ArchiveStore:
    if config.archive.backend == "filesystem":
        return FilesystemArchive(config.archive.path,
                                 throttle=Throttle.from_mbps(config.archive.max_upload_mbps))
    from .s3 import S3Archive  # the minio SDK is only loaded when asked for

    return S3Archive.from_config(config.archive)
