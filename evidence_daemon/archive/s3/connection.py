"""One bucket of an S3 server as the archive sees it: the client, retries, error translation.

Errors from the SDK and urllib3 are translated here, once: transient ones (connection errors,
timeouts, 5xx) are retried with exponential backoff and jitter (tenacity) and then reported as
``StorageError("archive s3://host/bucket unreachable: ...")``; refusals (AccessDenied,
NoSuchBucket, ...) are reported at once. Tenacity is the only retry layer: the client's own
pool never retries, so waits are not multiplied.

Must never: retry a refusal, or put the secret key in a message or a log line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.datatypes import Object
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ...errors import ConfigError, ObjectMissingError, StorageError
from ...http_errors import describe
from ...i18n import _

if TYPE_CHECKING:
    from ...config import ArchiveConfig

logger = logging.getLogger(__package__)

_T = TypeVar("_T")

# S3 error codes worth retrying even when a proxy answers them with a 4xx status.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
    }
)
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
MISSING_CODES = ("NoSuchKey", "NoSuchVersion")


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, S3Error):
        return int(exc.response.status)
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        # A non-XML answer, typically a proxy's 502/503 page; the SDK keeps the code private.
        code = getattr(exc, "_code", None)
        return code if isinstance(code, int) else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same request again later may succeed."""
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # certificate or TLS configuration: retrying only delays the real error
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return True
    status = _http_status(exc)
    return status is not None and status >= 500


def describe_s3(exc: BaseException) -> str:
    """A short reason for a human, with the S3 error code when the server gave one."""
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
    return describe(exc)


def make_client(
    config: ArchiveConfig, *, connect_timeout_s: float, read_timeout_s: float
) -> tuple[Minio, str]:
    """The SDK client for ``[archive]`` and the endpoint it talks to (``host:port``)."""
    endpoint, secure = config.endpoint, config.secure
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):  # a URL names its scheme: believe it
            endpoint, secure = endpoint[len(scheme):], scheme == "https://"
    endpoint = endpoint.rstrip("/")
    # Our own pool: short connect timeout so a dead endpoint fails in seconds, and no
    # urllib3-level retries, so tenacity is the only retry layer (no multiplied waits).
    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=config.ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=False,
    )
    try:
        client = Minio(
            endpoint,
            access_key=config.access_key or None,
            secret_key=config.secret_key or None,
            secure=secure,
            region=config.region or None,
            http_client=http_client,
        )
    except ValueError as exc:
        raise ConfigError(_("archive.endpoint: {endpoint!r} is not usable: {exc}").format(
            endpoint=config.endpoint, exc=exc)) from exc
    return client, endpoint


def client_host(client: Minio) -> str:
    # Only for location strings when the caller did not say; the SDK keeps the URL private.
    base_url = getattr(client, "_base_url", None)
    return str(getattr(base_url, "host", "?"))


class Bucket:
    """The client and bucket name, and ``call``: one SDK operation with retries, its final
    failure translated into ``StorageError`` (``ObjectMissingError`` for a missing key)."""

    def __init__(
        self,
        client: Minio,
        name: str,
        *,
        endpoint: str,
        attempts: int,
        backoff_s: float,
        backoff_max_s: float,
    ) -> None:
        self.client = client
        self.name = name
        self.location = f"s3://{endpoint}/{name}"
        self.attempts = attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s

    def call(self, what: str, operation: Callable[[], _T], *, key: str | None = None) -> _T:
        """Run one SDK operation with retries; translate its final failure once."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self._backoff_s, max=self._backoff_max_s),
            retry=retry_if_exception(is_transient),
            before_sleep=self._log_retry(what),
            reraise=True,
        )
        try:
            return retrying(operation)
        except (MinioException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise self.translate(exc, what, key) from exc

    def _log_retry(self, what: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                _("archive %s: %s failed (attempt %d of %d: %s); retrying in %.1f s"),
                self.location, what, state.attempt_number, self.attempts,
                describe_s3(exc) if exc is not None else "?", delay,
            )

        return log

    def translate(self, exc: BaseException, what: str, key: str | None) -> StorageError:
        code = exc.code if isinstance(exc, S3Error) else None
        if code in MISSING_CODES and key is not None:
            return ObjectMissingError(f"{key} is not in the archive {self.location}")
        if code == "NoSuchBucket":
            return StorageError(f"archive {self.location}: bucket {self.name!r} does not exist")
        if code in _CREDENTIAL_CODES:
            return StorageError(
                f"archive {self.location} refused to {what}: {describe_s3(exc)} (check "
                "archive.access_key, the secret key and the bucket policy)"
            )
        if isinstance(exc, urllib3.exceptions.SSLError):
            return StorageError(f"archive {self.location}: TLS failed: {exc}")
        if is_transient(exc):
            tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
            return StorageError(
                f"archive {self.location} unreachable: {what}: {describe_s3(exc)}{tries}"
            )
        return StorageError(f"archive {self.location} refused to {what}: {describe_s3(exc)}")

    def head(self, key: str, version_id: str | None = None) -> Object | None:
        """The object's HEAD answer, or None when there is no such key (or version)."""

        def head() -> Object | None:
            try:
                return self.client.stat_object(self.name, key, version_id=version_id)
            except S3Error as exc:
                if exc.code in MISSING_CODES:
                    return None
                raise

        return self.call(f"stat {key}", head, key=key)

    def versioning_status(self) -> str:
        """``Enabled``, ``Suspended``, or ``Off`` (never enabled)."""
        config = self.call("read the bucket versioning",
                           lambda: self.client.get_bucket_versioning(self.name))
        return str(config.status or "Off")
