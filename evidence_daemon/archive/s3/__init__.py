"""The S3 archive: the storage contract in a MinIO (or any S3) bucket (``S3Archive``).

The production backend, in parts: ``archive`` (``S3Archive``, the contract's operations),
``connection`` (the client, retries, error translation), ``upload`` (hashing an original
while it is uploaded), ``lock`` (Object Lock retention and legal holds) and ``leftovers``
(unfinished multipart uploads a killed process left).

Nothing here may overwrite, delete or shorten the retention of anything in the bucket; the one
removal is aborting an unfinished upload, which was never an object.
"""

from .archive import S3Archive
from .connection import is_transient
from .upload import MIB, decode_metadata_value, encode_metadata_value, parallel_parts

__all__ = [
    "MIB",
    "S3Archive",
    "decode_metadata_value",
    "encode_metadata_value",
    "is_transient",
    "parallel_parts",
]
