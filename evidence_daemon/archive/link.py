"""The station's upload link: a cap on how fast it sends (``archive.max_upload_mbps``) and a
measure of how fast its uploads really go.

Town offices share 10-100 Mbit/s with daytime traffic. ``TokenBucket`` is the cap's rule, pure
(state and the caller's clock readings in, a wait out); ``Throttle`` applies it, thread-safe, to
the bytes each backend reads for an upload (S3: what the SDK reads from the upload reader, part
by part; filesystem: the copy into the archive — a hard link moves no byte and is not capped).
One throttle per store, shared by every upload of the station, so the cap is the station's.
Over a whole upload the rate holds; within one, the S3 SDK reads a part, then sends it at link
speed, so the cap is an average over a part (``archive.part_size_mib``), not a smooth stream.

``measured_rate`` (pure) and ``UploadMeter`` say what the uploads achieved: bytes stored per
second during which at least one upload was running (so idle hours and parallel uploads do not
distort it). The backlog forecast (``compliance.forecast``) counts on it.

This module only delays and counts: it must never change, drop or reorder a byte.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ..i18n import _

BYTES_PER_MBIT = 125_000  # a megabit per second (10^6 bits), as links are sold
# Below this much uploaded, a rate says more about per-file overhead than about the link.
MIN_MEASURED_BYTES = 1024 * 1024


def mbps_to_bytes_per_s(mbps: float) -> float:
    return mbps * BYTES_PER_MBIT


class TokenBucket:
    """``rate_bytes_per_s`` on average, bursts of at most ``burst_bytes``.

    ``reserve`` takes the tokens at once and says how long to wait before sending; the balance
    may go negative, so concurrent callers are paced one after another (no busy waiting, no
    starvation). Pure: the caller passes monotonic clock readings.
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: float, now_s: float) -> None:
        if rate_bytes_per_s <= 0 or burst_bytes <= 0:
            raise ValueError(_("a token bucket needs a positive rate and burst"))
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes
        self.tokens = burst_bytes
        self.updated_s = now_s

    def reserve(self, count: int, now_s: float) -> float:
        """Take ``count`` bytes' worth; return the seconds to wait before sending them."""
        elapsed_s = max(now_s - self.updated_s, 0.0)
        self.tokens = min(self.burst_bytes, self.tokens + elapsed_s * self.rate_bytes_per_s)
        self.updated_s = max(now_s, self.updated_s)
        self.tokens -= count
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate_bytes_per_s


class Throttle:
    """A ``TokenBucket`` shared by the station's uploads; ``take`` sleeps as long as it says."""

    def __init__(
        self,
        rate_bytes_per_s: float,
        *,
        burst_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # A quarter second's worth: a short burst at start, the average held from then on.
        self._bucket = TokenBucket(rate_bytes_per_s, burst_bytes or rate_bytes_per_s / 4, clock())

    @classmethod
    def from_mbps(cls, max_upload_mbps: float) -> Throttle | None:
        """The configured cap, or None when it is 0 (unlimited)."""
        return cls(mbps_to_bytes_per_s(max_upload_mbps)) if max_upload_mbps > 0 else None

    @property
    def rate_bytes_per_s(self) -> float:
        return self._bucket.rate_bytes_per_s

    def take(self, count: int) -> None:
        """Wait until ``count`` more bytes may be sent."""
        with self._lock:
            wait_s = self._bucket.reserve(count, self._clock())
        if wait_s > 0:
            self._sleep(wait_s)


@dataclass(frozen=True)
class UploadSample:
    """One original stored: when its upload started and ended (monotonic s), and its size."""

    started_s: float
    finished_s: float
    size_bytes: int


def busy_seconds(samples: Sequence[UploadSample]) -> float:
    """How long at least one of the uploads was running (the union of their intervals)."""
    total_s = 0.0
    current_start: float | None = None
    current_end = 0.0
    for sample in sorted(samples, key=lambda s: s.started_s):
        if current_start is None or sample.started_s > current_end:
            if current_start is not None:
                total_s += current_end - current_start
            current_start, current_end = sample.started_s, sample.finished_s
        else:
            current_end = max(current_end, sample.finished_s)
    if current_start is not None:
        total_s += current_end - current_start
    return total_s


def measured_rate(
    samples: Sequence[UploadSample], *, min_bytes: int = MIN_MEASURED_BYTES
) -> float | None:
    """Bytes per busy second over ``samples``; None until enough has gone up to say."""
    size_bytes = sum(sample.size_bytes for sample in samples)
    busy_s = busy_seconds(samples)
    if size_bytes < min_bytes or busy_s <= 0:
        return None
    return size_bytes / busy_s


class UploadMeter:
    """The latest ``keep`` uploads of this process, for ``measured_rate`` (thread-safe).

    Kept across idle hours: the last known rate of the link is still the best guess."""

    def __init__(self, keep: int = 32) -> None:
        self._samples: deque[UploadSample] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, sample: UploadSample) -> None:
        with self._lock:
            self._samples.append(sample)

    def rate_bytes_per_s(self) -> float | None:
        with self._lock:
            samples = list(self._samples)
        return measured_rate(samples)
