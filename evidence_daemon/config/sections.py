"""Every configuration key, declared once: its type, default, limits and help (``description``).

Frozen pydantic models, closed to unknown keys. A value of the wrong type or outside its limits
is refused by the model itself; the loader (``config/__init__.py``) only layers the sources and
turns pydantic's errors into a ``ConfigError`` naming the key. What must never happen: a key
here that ``config/evidence-daemon.toml`` does not list with its default, or a key there that is
not declared here (tests/test_config.py checks both); a check of a value anywhere but beside
its field.
"""

from __future__ import annotations

import ipaddress
import os
import re
import zoneinfo
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationInfo, field_validator, model_validator

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


class Invalid(ValueError):
    """A refused value; ``key`` (``"endpoint"``, ``"vfat"``) names it below where it was seen."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


# -- value types shared by several keys: how a TOML or environment value becomes one ----------

def _listed(value: Any) -> Any:
    """Lists from the environment or ``--set`` are comma-separated."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _given_path(value: Any) -> Any:
    if value == "":
        raise Invalid("expected a path, got ''")
    return value


def _unset_if_empty(value: Any) -> Any:
    return None if value == "" else value


def _writer_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise Invalid(f"{value!r} must be 1-64 letters, digits, '.', '_' or '-' (it names a "
                      "writer's ledger in the archive)")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(str(exc)) from None
    return value


def _filename_pattern(value: str) -> str:
    if "start" not in re.compile(_regex(value)).groupindex:
        raise Invalid("needs a (?P<start>...) group")
    return value


def _usb_id(value: str) -> str:
    if value and not re.fullmatch(r"[0-9a-fA-F]{4}", value):
        raise Invalid("expected 4 hex digits")
    return value


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Invalid(f"{value!r} is not an IP address or network "
                      "(e.g. \"10.0.0.5\" or \"10.0.0.0/24\")") from None
    return value


def _mount_commands(value: Any) -> Any:
    """A TOML table ``{ vfat = "..." }`` becomes sorted (type, command) pairs."""
    if isinstance(value, dict):
        if not all(isinstance(command, str) for command in value.values()):
            raise Invalid("expected a table of strings, e.g. { vfat = \"...\" }")
        value = sorted(value.items())
    if not isinstance(value, (list, tuple)):
        raise Invalid("expected a table of strings, e.g. { vfat = \"...\" }")
    for fstype, command in value:
        if "{device}" not in command and "{busnum}" not in command or "{mountpoint}" not in command:
            raise Invalid("needs {device} and {mountpoint}", key=fstype)
    return value


StrList = Annotated[tuple[str, ...], BeforeValidator(_listed)]
GivenPath = Annotated[Path, BeforeValidator(_given_path)]
OptionalPath = Annotated[Path | None, BeforeValidator(_unset_if_empty)]
WriterId = Annotated[str, AfterValidator(_writer_id)]
Regex = Annotated[str, AfterValidator(_regex)]
UsbId = Annotated[str, AfterValidator(_usb_id)]


class Section(BaseModel):
    """One ``[section]`` of the file: frozen, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``retries = true`` is a mistake, not 1 (pydantic would take it)."""
        wanted = cls.model_fields[info.field_name or ""].annotation
        if isinstance(value, bool) and wanted in (int, float):
            raise Invalid(f"expected {'an integer' if wanted is int else 'a number'}, "
                          f"got {value!r}")
        return value


class StationConfig(Section):
    id: WriterId = Field(default="station", description="names the station's ledger in the archive")
    state_dir: GivenPath = Field(default=Path("/var/lib/evidence-daemon"),
                                 description="SQLite state, the spool and the signing key")
    timezone: str = Field(default="Asia/Shanghai", description="the zone of recorders' local times")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"unknown time zone {value!r}") from None
        return value


class ArchiveConfig(Section):
    backend: Literal["filesystem", "s3"] = "filesystem"
    path: GivenPath = Field(default=Path("/srv/evidence-archive"), description="filesystem backend")
    endpoint: str = Field(default="", description="s3 backend: host:port, without scheme")
    bucket: str = "evidence"
    access_key: str = ""
    secret_key: str = Field(default="", repr=False)
    secret_key_file: str = Field(default="", description="a file holding the secret; wins over it")
    secure: bool = Field(default=True, description="TLS to the endpoint")
    ca_file: str = Field(
        default="", description="PEM certificates to trust for the endpoint (default: the "
        "system's)")
    region: str = "us-east-1"
    part_size_mib: int = Field(default=8, ge=5, le=5120, description="multipart part size in MiB")
    retention_days: int = Field(default=180, ge=1, description="Object Lock retention of originals")
    require_object_lock: bool = False
    sse: Literal["", "s3"] = Field(default="", description="'' (off) or 's3' (SSE-S3)")
    verify: Literal["stream", "readback"] = "stream"
    upload_workers: int = Field(default=2, ge=1, le=32)
    retries: int = Field(default=5, ge=0, description="attempts for transient S3 errors")
    max_upload_mbps: float = Field(
        default=0.0, ge=0, le=1_000_000,
        description="the station's upload rate cap in Mbit/s, so daytime traffic still works; "
        "0: unlimited")

    @model_validator(mode="after")
    def _s3_needs(self) -> ArchiveConfig:
        if self.backend != "s3":
            return self
        if not self.endpoint:
            raise Invalid("required when archive.backend = 's3'", key="endpoint")
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", self.bucket):
            raise Invalid(f"{self.bucket!r} is not a valid bucket name", key="bucket")
        if self.ca_file and not os.access(self.ca_file, os.R_OK):
            raise Invalid(f"cannot read {self.ca_file} (a PEM file of the certificates to trust "
                          "for archive.endpoint)", key="ca_file")
        return self


class IngestConfig(Section):
    spool_dir: OptionalPath = Field(default=None, description="default: <state_dir>/spool")
    hash_sm3: bool = Field(
        default=False, description="also compute SM3 (GB/T 32905) of every original")
    skip: StrList = Field(default=DEFAULT_SKIP, description="names left out of every ingest")
    filename_patterns: Annotated[
        tuple[Annotated[str, AfterValidator(_filename_pattern)], ...], BeforeValidator(_listed)
    ] = Field(default=DEFAULT_FILENAME_PATTERNS, description="first match wins; (?P<start>...)")
    priority_patterns: StrList = Field(default=DEFAULT_PRIORITY_PATTERNS,
                                       description="files a recorder marked important")
    copy_chunk_kib: int = Field(default=4096, ge=64, le=65536, description="read size when copying")
    queue_depth: int = Field(
        default=4, ge=1, description="spooled files waiting for an upload worker")
    probe: bool = Field(default=True, description="run ffprobe on each file")


class ComplianceConfig(Section):
    deadline_hours: float = Field(default=24.0, gt=0, description="deadline = recorded_end + this")
    at_risk_margin_hours: float = Field(default=4.0, ge=0)
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
            raise Invalid(f"{value!r} is not an ISO 8601 date or time "
                          "(for example \"2015-01-01\")") from None
        return value

    def earliest_plausible_at(self, zone: tzinfo) -> datetime:
        """``earliest_plausible`` as an aware time (a validated config parses)."""
        moment = datetime.fromisoformat(self.earliest_plausible.strip())
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class DockRule(Section):
    """Which docked devices are recorders or terminals. All given criteria must match."""

    role: Literal["recorder", "terminal"] = "recorder"
    model: str = ""
    vendor_id: UsbId = Field(default="", description="USB idVendor, 4 hex digits")
    product_id: UsbId = Field(default="", description="USB idProduct, 4 hex digits")
    serial_pattern: Regex = Field(default="", description="full match on the USB serial")
    label_pattern: Regex = Field(default="", description="full match on the filesystem label")
    wipe: bool = Field(default=False, description="delete files once their archived copies verify")
    pre_mount: str = Field(
        default="", description="run before mounting (vendor unlock); {device} given")

    @model_validator(mode="after")
    def _matches_something(self) -> DockRule:
        if not (self.vendor_id or self.product_id or self.serial_pattern or self.label_pattern):
            raise Invalid("give at least one of vendor_id, product_id, serial_pattern, "
                          "label_pattern (a rule matching everything is unsafe)")
        return self


def _unmount_command(value: str) -> str:
    if "{mountpoint}" not in value:
        raise Invalid("needs {mountpoint}")
    return value


class DockConfig(Section):
    runtime_dir: GivenPath = Path("/run/evidence-daemon")
    max_concurrent_devices: int = Field(
        default=0, ge=0, description="0: every docked device at once (a shift change), else a "
        "limit")
    ignore_unknown: bool = True
    settle_s: float = Field(default=2.0, ge=0, description="wait after a device appears")
    mount_commands: Annotated[
        tuple[tuple[str, str], ...], BeforeValidator(_mount_commands)
    ] = Field(default=DEFAULT_MOUNT_COMMANDS,
              description="filesystem type -> command mounting {device} read-only at {mountpoint}")
    unmount_command: Annotated[str, AfterValidator(_unmount_command)] = "umount {mountpoint}"
    rules: tuple[DockRule, ...] = ()


class WatchConfig(Section):
    """An inbox folder (fixed recorders, terminals syncing over Wi-Fi) ingested like a device."""

    path: GivenPath = Path("/srv/evidence-inbox")
    device_id: str = ""
    officer_id: str = ""
    stable_s: float = Field(
        default=10.0, ge=0, description="taken once unchanged and closed this long")
    after: Literal["keep", "move", "remove"] = Field(
        default="keep",
        description="after its archived copy verifies: keep, move (to done/), remove")


class MediaConfig(Section):
    """Viewing copies (proxies) and posters, made after the original is archived."""

    proxy: bool = True
    proxy_max_width: int = 1280
    proxy_max_height: int = 720
    proxy_video_kbps: int = 1500
    proxy_audio_kbps: int = 96
    proxy_workers: int = 1
    proxy_nice: int = 10
    proxy_retries: int = 3
    ffmpeg: str = "ffmpeg"


class MetricsConfig(Section):
    """Prometheus metrics served by ``run``; an empty listen address turns them off."""

    listen: str = "127.0.0.1:9464"


class UpkeepConfig(Section):
    """Scheduled jobs inside ``run``."""

    compliance_scan_s: float = 60.0
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    fixity_period_days: float = 30.0
    fixity_interval_s: float = 600.0
    spool_cleanup_s: float = 3600.0
    undocked_limit_hours: float = 24.0
    leftover_cleanup_s: float = Field(default=3600.0, gt=0)
    leftover_age_s: float = Field(
        default=86400.0, ge=0, description="unfinished writes (staging files, multipart uploads) "
        "are removed once this old: longer than any upload takes")
    checkpoint_s: float = Field(
        default=3600.0, gt=0, le=3600, description="witnessing at least hourly is what makes a "
        "removed chain end visible")


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"expected host:port, got {value!r}")
    return value


class ApiConfig(Section):
    """The auditors' retrieval API (``evidence-daemon serve``), a process of its own."""

    id: WriterId = Field(
        default="api-1", description="writer id of this node's audit chain; unique per node")
    state_dir: GivenPath = Path("/var/lib/evidence-api")
    listen: Annotated[str, AfterValidator(_host_port)] = "127.0.0.1:8480"
    poll_s: float = Field(
        default=10.0, gt=0, description="how often the catalog reads new ledger entries")
    failed_login_limit: int = Field(
        default=10, ge=1, description="per client and per token, then 429")
    failed_login_window_s: float = Field(default=300.0, gt=0)
    trusted_proxies: Annotated[
        tuple[Annotated[str, AfterValidator(_ip_network)], ...], BeforeValidator(_listed)
    ] = Field(default=(), description="reverse proxies whose X-Forwarded-For is believed")
    grant_ttl_s: float = Field(
        default=900.0, gt=0, description="how long a player link stays usable")
    secure_cookies: bool = Field(
        default=False, description="mark the console's cookie Secure (TLS)")
    max_export_recordings: int = Field(default=100, ge=1)
    page_size_max: int = Field(default=500, ge=1)
    checkpoint_entries: int = Field(
        default=100, ge=1, description="sign a checkpoint after this many")
    checkpoint_s: float = Field(default=600.0, gt=0, description="or this long with any appended")


class VerifyConfig(Section):
    """Trust anchors for ``verify``, ``verify-package`` and the API node's catalog."""

    trusted_keys: OptionalPath = Field(
        default=None, description="one writer key fingerprint (SHA256:...) per line; unset: "
        "verify checks consistency only, and says so")


def _readable_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise Invalid(f"{value} is not a readable file")
    return value


class TimestampConfig(Section):
    """Optional RFC 3161 timestamps on checkpoints (可信时间戳); an empty ``url`` turns them off."""

    url: str = Field(default="", description="the time-stamping authority, http:// or https://")
    tsa_cert_file: Annotated[OptionalPath, AfterValidator(_readable_file)] = Field(
        default=None, description="PEM: the TSA's certificate and its CA; required with a url")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _url_and_certificate(self) -> TimestampConfig:
        if self.url and not re.match(r"^https?://[^/\s]+", self.url):
            raise Invalid("expected an http:// or https:// URL of a time-stamping authority, "
                          f"got {self.url!r}", key="url")
        if self.url and self.tsa_cert_file is None:
            raise Invalid("required when timestamp.url is set (the TSA's certificate and its CA, "
                          "PEM): a token nobody can check proves nothing", key="tsa_cert_file")
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
    verify: VerifyConfig = VerifyConfig()
    timestamp: TimestampConfig = TimestampConfig()
    watch: tuple[WatchConfig, ...] = ()
    source: str = "defaults"

    @model_validator(mode="after")
    def _writer_ids_differ(self) -> Config:
        if self.api.id == self.station.id:
            raise Invalid(f"{self.api.id!r} is also station.id; an API node needs a writer id "
                          "of its own", key="api.id")
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
