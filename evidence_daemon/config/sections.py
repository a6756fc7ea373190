"""Every configuration key, declared once: its type, default, limits and help (``description``).

Frozen pydantic models, closed to unknown keys. A value of the wrong type or outside its limits
is refused by the model itself; the loader (``config/__init__.py``) only layers the sources and
turns pydantic's errors into a ``ConfigError`` naming the key. What must never happen: a key
here that ``config/evidence-daemon.toml`` does not list with its default, or a key there that is
not declared here (tests/test_config.py checks both); a check of a value anywhere but beside
its field.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .values import (
    After,
    FilenamePatterns,
    GivenPath,
    HostPort,
    Invalid,
    IpNetworks,
    MountCommands,
    OptionalPath,
    ReadableFile,
    Regex,
    StrList,
    UnmountCommand,
    UsbId,
    WriterId,
)
from ..i18n import _

DEFAULT_SKIP = (
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    ".Spotlight-V100",
    ".Trashes",
    ".fseventsd",
    ".TemporaryItems",
    "System Volume Information",
    "$RECYCLE.BIN",
    "RECYCLER",
    "FOUND.[0-9][0-9][0-9]",
)

# Common Chinese body-camera naming: <device>_<officer>_<YYYYMMDDhhmmss>_<seq>.<ext>, and the
# bare-timestamp variants written by handheld terminals and older recorders. Times are local
# (station time zone) and mark the start of the recording.
DEFAULT_FILENAME_PATTERNS = (
    r"^(?P<device>[A-Za-z0-9-]+)_(?P<officer>[A-Za-z0-9-]+)_(?P<start>\d{14})_(?P<seq>\d+)",
    r"^(?P<device>[A-Za-z0-9-]+)_(?P<officer>[A-Za-z0-9-]+)_(?P<start>\d{8}_\d{6})_(?P<seq>\d+)",
    r"^(?:VID|IMG|AUD|REC)?_?(?P<start>\d{8}_?\d{6})(?:_(?P<seq>\d+))?",
)

# How recorders mark a file important (the officer's "key file" button): a 重要 (important) or
# 重点 (key) folder or name, or IMP in the name. Shell patterns on the path relative to the
# device root, case-sensitive; ``*`` also spans folders. Marked files are uploaded first.
DEFAULT_PRIORITY_PATTERNS = (
    "*重要*",
    "*重点*",
    "*_IMP_*",
    "*_IMP.*",
    "IMP_*",
    "*/IMP_*",
    "IMP/*",
    "*/IMP/*",
)

DEFAULT_MOUNT_COMMANDS = tuple(sorted({
    "vfat": "fusefat -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "exfat": "mount.exfat-fuse -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "ext4": "mount -t ext4 -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "mtp": "jmtpfs -o ro,nosuid,nodev,noexec -device={busnum},{devnum} {mountpoint}",
}.items()))


class Section(BaseModel):
    """One ``[section]`` of the file: frozen, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``retries = true`` is a mistake, not 1 (pydantic would take it)."""
        wanted = cls.model_fields[info.field_name or ""].annotation
        if isinstance(value, bool) and wanted in (int, float):
            raise Invalid(_("expected {value}, got {value2!r}").format(
                value='an integer' if wanted is int else 'a number', value2=value))
        return value


class StationConfig(Section):
    id: WriterId = Field(
        default="station", description="names this station's ledger and key in the archive; "
        "unique there, never changed once anything is archived")
    state_dir: GivenPath = Field(
        default=Path("/var/lib/evidence-daemon"),
        description="SQLite state, the spool and the station's private signing key")
    timezone: str = Field(
        default="Asia/Shanghai", description="the zone of recorders' local times")
    language: Literal["auto", "en", "zh_CN"] = Field(
        default="auto", description="the language of what the station prints and logs for "
        "people: auto (from LC_ALL / LC_MESSAGES / LANG), en or zh_CN; --lang wins")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Invalid(_("unknown time zone {value!r}").format(value=value)) from None
        return value


class ArchiveConfig(Section):
    backend: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="a local disk or mounted NAS, or S3 (MinIO)")
    path: GivenPath = Field(
        default=Path("/srv/evidence-archive"), description="filesystem backend: its folder")
    endpoint: str = Field(default="", description="s3 backend: host:port, without scheme")
    bucket: str = Field(default="evidence", description="s3 backend: the bucket")
    access_key: str = Field(default="", description="s3 backend: the access key")
    secret_key: str = Field(default="", repr=False, description="s3 backend: never logged")
    secret_key_file: str = Field(
        default="", description="a file holding the secret key (a systemd credential); wins")
    secure: bool = Field(default=True, description="TLS to the endpoint")
    ca_file: str = Field(
        default="", description="PEM certificates to trust for the endpoint (default: "
        "$SSL_CERT_FILE, else the certifi bundle)")
    region: str = Field(default="us-east-1", description="s3 backend: the region")
    part_size_mib: int = Field(
        default=8, ge=5, le=5120, description="multipart part size in MiB (S3 part limits)")
    retention_days: int = Field(
        default=180, ge=1, description="Object Lock retention of originals when the bucket "
        "has no default of its own")
    require_object_lock: bool = Field(
        default=False, description="refuse a bucket without Object Lock")
    sse: Literal["", "s3"] = Field(
        default="", description="server-side encryption: '' (off) or 's3' (SSE-S3)")
    verify: Literal["stream", "readback"] = Field(
        default="stream", description="how an S3 original is proven: checksums while "
        "streaming, or reading it back")
    upload_workers: int = Field(
        default=2, ge=1, le=32, description="parallel uploads of different files")
    retries: int = Field(default=5, ge=0, description="attempts for transient S3 errors")
    max_upload_mbps: float = Field(
        default=0.0, ge=0, le=1_000_000, description="the station's upload rate cap in Mbit/s, "
        "so daytime traffic still works; 0: unlimited")

    @model_validator(mode="after")
    def _s3_needs(self) -> ArchiveConfig:
        if self.backend != "s3":
            return self
        if not self.endpoint:
            raise Invalid(_("required when archive.backend = 's3'"), key="endpoint")
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", self.bucket):
            raise Invalid(_("{bucket!r} is not a valid bucket name").format(
                bucket=self.bucket), key="bucket")
        if self.ca_file and not os.access(self.ca_file, os.R_OK):
            raise Invalid(_("cannot read {ca_file} (a PEM file of the certificates to trust for "
                            "archive.endpoint)").format(ca_file=self.ca_file), key="ca_file")
        return self


class IngestConfig(Section):
    spool_dir: OptionalPath = Field(
        default=None, description="where copies wait until archived and verified (default: "
        "<state_dir>/spool)")
    hash_sm3: bool = Field(
        default=False, description="also compute SM3 (GB/T 32905) of every original")
    skip: StrList = Field(
        default=DEFAULT_SKIP, description="names left out of every ingest (shell patterns)")
    filename_patterns: FilenamePatterns = Field(
        default=DEFAULT_FILENAME_PATTERNS,
        description="file-name patterns, first match wins; a (?P<start>...) group is required")
    priority_patterns: StrList = Field(
        default=DEFAULT_PRIORITY_PATTERNS, description="files a recorder marked important, "
        "uploaded first (shell patterns on the path)")
    copy_chunk_kib: int = Field(
        default=4096, ge=64, le=65536, description="read size when copying from a device")
    queue_depth: int = Field(
        default=4, ge=1, description="spooled files waiting for an upload worker")
    probe: bool = Field(default=True, description="run ffprobe on each file")


class ComplianceConfig(Section):
    deadline_hours: float = Field(
        default=24.0, gt=0, description="deadline = recorded_end + deadline_hours")
    at_risk_margin_hours: float = Field(
        default=4.0, ge=0, description="a pending recording with less left is at risk")
    earliest_plausible: str = Field(
        default="2015-01-01", description="a recorder time before this (ISO date or time; "
        "without an offset, station time) is a reset clock, not old footage")
    clock_tolerance_hours: float = Field(
        default=2.0, ge=0, description="a recorder time later than when the station first saw "
        "the file plus this is a clock that runs ahead")

    @field_validator("earliest_plausible")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(_("{value!r} is not an ISO 8601 date or time (for example "
                            "\"2015-01-01\")").format(value=value)) from None
        return value

    def earliest_plausible_at(self, zone: tzinfo) -> datetime:
        """``earliest_plausible`` as an aware time (a validated config parses)."""
        moment = datetime.fromisoformat(self.earliest_plausible.strip())
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class DockRule(Section):
    """Which docked devices are recorders or terminals. All given criteria must match."""

    role: Literal["recorder", "terminal"] = Field(
        default="recorder", description="a body camera, or a handheld terminal")
    model: str = Field(default="", description="the model name logged and recorded")
    vendor_id: UsbId = Field(default="", description="USB idVendor, 4 hex digits")
    product_id: UsbId = Field(default="", description="USB idProduct, 4 hex digits")
    serial_pattern: Regex = Field(
        default="", description="regular expression, full match on the USB serial")
    label_pattern: Regex = Field(
        default="", description="regular expression, full match on the filesystem label")
    wipe: bool = Field(
        default=False, description="delete files from the device once archived copies verify")
    pre_mount: str = Field(
        default="", description="command run before mounting (vendor unlock); {device} given")

    @model_validator(mode="after")
    def _matches_something(self) -> DockRule:
        if not (self.vendor_id or self.product_id or self.serial_pattern or self.label_pattern):
            raise Invalid(_("give at least one of vendor_id, product_id, serial_pattern, "
                            "label_pattern (a rule matching everything is unsafe)"))
        return self


class DockConfig(Section):
    runtime_dir: GivenPath = Field(
        default=Path("/run/evidence-daemon"), description="devices mount under <runtime_dir>/mnt")
    max_concurrent_devices: int = Field(
        default=0, ge=0, description="0: every docked device at once (a shift change), else a "
        "limit")
    ignore_unknown: bool = Field(
        default=True, description="log and leave alone removable devices no rule matches")
    settle_s: float = Field(
        default=2.0, ge=0, description="the most to wait after a device appears for it to be "
        "readable before mounting it")
    mount_commands: MountCommands = Field(
        default=DEFAULT_MOUNT_COMMANDS,
        description="filesystem type -> command mounting {device} read-only at {mountpoint}")
    unmount_command: UnmountCommand = Field(
        default="umount {mountpoint}", description="the command that unmounts {mountpoint}")
    rules: tuple[DockRule, ...] = Field(
        default=(), description="[[dock.rules]]: which devices are recorders or terminals")


class WatchConfig(Section):
    """An inbox folder (fixed recorders, terminals syncing over Wi-Fi) ingested like a device."""

    path: GivenPath = Field(default=Path("/srv/evidence-inbox"), description="the inbox folder")
    device_id: str = Field(default="", description="the recorder behind this inbox")
    officer_id: str = Field(
        default="", description="default officer when the file name does not say")
    stable_s: float = Field(
        default=10.0, ge=0, description="a file is taken once closed and unchanged this long")
    after: After = Field(
        default=After.KEEP, description="once its archived copy verifies: keep, move (to done/), "
        "remove")


class MediaConfig(Section):
    """Viewing copies (proxies) and posters, made after the original is archived."""

    proxy: bool = Field(
        default=True, description="make a browser-playable proxy and a poster of each video")
    proxy_max_width: int = Field(default=1280, description="proxy frame width at most")
    proxy_max_height: int = Field(default=720, description="proxy frame height at most")
    proxy_video_kbps: int = Field(default=1500, description="proxy video bit rate")
    proxy_audio_kbps: int = Field(default=96, description="proxy audio bit rate")
    proxy_workers: int = Field(default=1, description="transcodes at a time")
    proxy_nice: int = Field(default=10, description="their niceness (they yield to ingest)")
    proxy_retries: int = Field(default=3, description="attempts before a proxy is given up")
    ffmpeg: str = Field(default="ffmpeg", description="the ffmpeg program")


class MetricsConfig(Section):
    listen: str = Field(
        default="127.0.0.1:9464", description="Prometheus metrics of run (host:port); '' off")


class UpkeepConfig(Section):
    """Scheduled jobs inside ``run``."""

    compliance_scan_s: float = Field(default=60.0, description="how often deadlines are checked")
    retry_base_s: float = Field(default=30.0, description="first wait before a failed upload")
    retry_max_s: float = Field(default=3600.0, description="longest wait between retries")
    fixity_period_days: float = Field(
        default=30.0, description="every archived original is re-hashed once in this period")
    fixity_interval_s: float = Field(default=600.0, description="how often fixity checks run")
    spool_cleanup_s: float = Field(default=3600.0, description="how often the spool is tidied")
    undocked_limit_hours: float = Field(
        default=24.0, description="a device in service not docked this long is flagged")
    leftover_cleanup_s: float = Field(
        default=3600.0, gt=0, description="how often unfinished writes are looked for")
    leftover_age_s: float = Field(
        default=86400.0, ge=0, description="unfinished writes (staging files, multipart uploads) "
        "are removed once this old: longer than any upload takes")
    checkpoint_s: float = Field(
        default=3600.0, gt=0, le=3600, description="witness and sign checkpoints this often; "
        "at least hourly is what makes a removed chain end visible")


class ApiConfig(Section):
    """The auditors' retrieval API (``evidence-daemon serve``), a process of its own."""

    id: WriterId = Field(
        default="api-1", description="writer id of this node's audit chain; unique per node")
    state_dir: GivenPath = Field(
        default=Path("/var/lib/evidence-api"),
        description="catalog index, users and the node's signing key")
    listen: HostPort = Field(default="127.0.0.1:8480", description="host:port served")
    poll_s: float = Field(
        default=10.0, gt=0, description="how often the catalog reads new ledger entries")
    failed_login_limit: int = Field(
        default=10, ge=1, description="failed sign-ins per client and per token, then 429")
    failed_login_window_s: float = Field(
        default=300.0, gt=0, description="the window failed sign-ins are counted in")
    trusted_proxies: IpNetworks = Field(
        default=(), description="reverse proxies (addresses, networks) whose X-Forwarded-For "
        "is believed")
    grant_ttl_s: float = Field(
        default=900.0, gt=0, description="how long a player link (one recorded access) works")
    secure_cookies: bool = Field(
        default=False, description="mark the console's cookie Secure (set it behind TLS)")
    max_export_recordings: int = Field(default=100, ge=1, description="recordings per export")
    page_size_max: int = Field(default=500, ge=1, description="rows per page at most")
    checkpoint_entries: int = Field(
        default=100, ge=1, description="sign a checkpoint once this many entries were appended")
    checkpoint_s: float = Field(
        default=600.0, gt=0, description="or once this long passed with any appended")


class IncidentsConfig(Section):
    """Matching dispatched incidents to footage on the API node (``incidents/coverage.py``)."""

    margin_minutes: float = Field(
        default=5.0, ge=0, le=120, description="dispatch and recorder clocks differ: footage "
        "this close to an incident's window counts, and a gap this long at its start or end "
        "is forgiven")
    seam_s: float = Field(
        default=10.0, ge=0, le=600, description="a gap between recordings inside the window "
        "up to this long (a recorder splitting files) is not a gap")
    covered_fraction: float = Field(
        default=0.9, gt=0, le=1, description="the share of an incident's window footage must "
        "span for it to count as covered")


class VerifyConfig(Section):
    """Trust anchors for ``verify``, ``verify-package`` and the API node's catalog."""

    trusted_keys: OptionalPath = Field(
        default=None, description="a file of writer key fingerprints (SHA256:...), one a line; "
        "unset: verify checks consistency only, and says so")


class TimestampConfig(Section):
    """Optional RFC 3161 timestamps on checkpoints (可信时间戳); an empty ``url`` turns them off."""

    url: str = Field(default="", description="the time-stamping authority, http:// or https://")
    tsa_cert_file: ReadableFile = Field(
        default=None, description="PEM: the TSA's signing certificate and its CA; required "
        "with a url")
    timeout_s: float = Field(default=10.0, gt=0, description="wait for the TSA's answer")

    @model_validator(mode="after")
    def _url_and_certificate(self) -> TimestampConfig:
        if self.url and not re.match(r"^https?://[^/\s]+", self.url):
            raise Invalid(_("expected an http:// or https:// URL of a time-stamping authority, "
                            "got {url!r}").format(url=self.url), key="url")
        if self.url and self.tsa_cert_file is None:
            raise Invalid(_("required when timestamp.url is set (the TSA's certificate and its "
                            "CA, PEM): a token nobody can check proves nothing"), key="tsa_cert_file")
        return self


class Config(Section):
    station: StationConfig = StationConfig()
    archive: ArchiveConfig = ArchiveConfig()
    ingest: IngestConfig = IngestConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    dock: DockConfig = DockConfig()
    media: MediaConfig = MediaConfig()
    metrics: MetricsConfig = MetricsConfig()
    upkeep: UpkeepConfig = UpkeepConfig()
    api: ApiConfig = ApiConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    verify: VerifyConfig = VerifyConfig()
    timestamp: TimestampConfig = TimestampConfig()
    watch: tuple[WatchConfig, ...] = ()
    source: str = "defaults"

    @model_validator(mode="after")
    def _writer_ids_differ(self) -> Config:
        if self.api.id == self.station.id:
            raise Invalid(_("{id!r} is also station.id; an API node needs a writer id of its own").format(
                id=self.api.id), key="api.id")
        return self

    @property
    def spool_dir(self) -> Path:
        return self.ingest.spool_dir or self.station.state_dir / "spool"

    @property
    def database_path(self) -> Path:
        return self.station.state_dir / "state.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.station.state_dir / "keys" / "station.ed25519"

    @property
    def api_database_path(self) -> Path:
        return self.api.state_dir / "catalog.sqlite3"

    @property
    def api_key_path(self) -> Path:
        return self.api.state_dir / "keys" / "api.ed25519"


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation for name, field in Config.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}
