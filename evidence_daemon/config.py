"""Configuration: defaults < TOML file < ``EVIDENCE_*`` environment < command-line overrides.

Loaded once at start-up into frozen dataclasses and validated there, so a bad value stops the
daemon with an error that names the key (``archive.bucket``), never half-way through an ingest.

Environment overrides are ``EVIDENCE_<SECTION>_<KEY>`` (``EVIDENCE_ARCHIVE_PATH=/srv/a``);
command-line overrides are ``--set section.key=value``. Lists given that way are comma-separated.
Secrets may be given as ``*_file`` keys pointing at a file (systemd credentials); the file's
content wins and is never logged.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/evidence-daemon/config.toml")
ENV_CONFIG = "EVIDENCE_CONFIG"
ENV_PREFIX = "EVIDENCE_"

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


@dataclass(frozen=True)
class StationConfig:
    id: str = "station"
    state_dir: Path = Path("/var/lib/evidence-daemon")
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class ArchiveConfig:
    backend: str = "filesystem"
    # filesystem backend
    path: Path = Path("/srv/evidence-archive")
    # s3 backend (MinIO)
    endpoint: str = ""
    bucket: str = "evidence"
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    secret_key_file: str = ""
    secure: bool = True
    ca_file: str = ""  # PEM certificates to trust for the endpoint (default: the system's)
    region: str = "us-east-1"
    part_size_mib: int = 8
    retention_days: int = 180
    require_object_lock: bool = False
    sse: str = ""
    verify: str = "stream"
    upload_workers: int = 2
    retries: int = 5
    # The station's upload rate cap in Mbit/s (0: unlimited), so daytime traffic still works.
    max_upload_mbps: float = 0.0


@dataclass(frozen=True)
class IngestConfig:
    spool_dir: Path | None = None
    hash_sm3: bool = False
    skip: tuple[str, ...] = DEFAULT_SKIP
    filename_patterns: tuple[str, ...] = DEFAULT_FILENAME_PATTERNS
    priority_patterns: tuple[str, ...] = DEFAULT_PRIORITY_PATTERNS
    copy_chunk_kib: int = 4096
    queue_depth: int = 4
    probe: bool = True


@dataclass(frozen=True)
class ComplianceConfig:
    deadline_hours: float = 24.0
    at_risk_margin_hours: float = 4.0
    # A recorder time before this (ISO date or time; without an offset, station time) is a
    # reset clock, not old footage: body cameras with this software's naming are younger.
    earliest_plausible: str = "2015-01-01"
    # A recorder time later than when the station first saw the file plus this is a clock
    # that runs ahead (drift and a forgotten DST change stay well inside it).
    clock_tolerance_hours: float = 2.0

    def earliest_plausible_at(self, zone: tzinfo) -> datetime:
        """``earliest_plausible`` as an aware time (a validated config parses)."""
        moment = datetime.fromisoformat(self.earliest_plausible.strip())
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


DEFAULT_MOUNT_COMMANDS = tuple(sorted({
    "vfat": "fusefat -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "exfat": "mount.exfat-fuse -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "ext4": "mount -t ext4 -o ro,nosuid,nodev,noexec {device} {mountpoint}",
    "mtp": "jmtpfs -o ro,nosuid,nodev,noexec -device={busnum},{devnum} {mountpoint}",
}.items()))


@dataclass(frozen=True)
class DockRule:
    """Which docked devices are recorders or terminals. All given criteria must match."""

    role: str = "recorder"  # "recorder" or "terminal"
    model: str = ""
    vendor_id: str = ""  # USB idVendor, 4 hex digits
    product_id: str = ""  # USB idProduct, 4 hex digits
    serial_pattern: str = ""  # regular expression, full match on the USB serial
    label_pattern: str = ""  # regular expression, full match on the filesystem label
    wipe: bool = False  # delete files from the device once their archived copies verify
    pre_mount: str = ""  # command run before mounting (vendor unlock tools); {device} given


@dataclass(frozen=True)
class DockConfig:
    runtime_dir: Path = Path("/run/evidence-daemon")
    # 0: every docked device is served at once (a shift change); a number limits it.
    max_concurrent_devices: int = 0
    ignore_unknown: bool = True
    settle_s: float = 2.0
    # filesystem type -> command that mounts {device} read-only at {mountpoint}
    mount_commands: tuple[tuple[str, str], ...] = DEFAULT_MOUNT_COMMANDS
    unmount_command: str = "umount {mountpoint}"
    rules: tuple[DockRule, ...] = ()


@dataclass(frozen=True)
class WatchConfig:
    """An inbox folder (fixed recorders, terminals syncing over Wi-Fi) ingested like a device."""

    path: Path = Path("/srv/evidence-inbox")
    device_id: str = ""
    officer_id: str = ""
    stable_s: float = 10.0  # a file is taken once unchanged and closed for this long
    after: str = "keep"  # after its archived copy verifies: "keep", "move" (to done/), "remove"


@dataclass(frozen=True)
class MediaConfig:
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


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics served by ``run``; an empty listen address turns them off."""

    listen: str = "127.0.0.1:9464"


@dataclass(frozen=True)
class UpkeepConfig:
    """Scheduled jobs inside ``run``."""

    compliance_scan_s: float = 60.0
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    fixity_period_days: float = 30.0
    fixity_interval_s: float = 600.0
    spool_cleanup_s: float = 3600.0
    undocked_limit_hours: float = 24.0
    leftover_cleanup_s: float = 3600.0
    # Unfinished writes (staging temp files, multipart uploads) are removed once this old: longer
    # than any upload takes, since other stations sharing the archive cannot be asked.
    leftover_age_s: float = 86400.0
    # Witness the other writers' latest checkpoints and sign one of this station's chain: at
    # start of `run`, then this often (at most an hour, so truncation is caught within one).
    checkpoint_s: float = 3600.0


@dataclass(frozen=True)
class ApiConfig:
    """The auditors' retrieval API (``evidence-daemon serve``), a process of its own."""

    id: str = "api-1"  # writer id of this node's audit chain in the archive; unique per node
    state_dir: Path = Path("/var/lib/evidence-api")
    listen: str = "127.0.0.1:8480"
    poll_s: float = 10.0  # how often the catalog reads new ledger entries from the archive
    failed_login_limit: int = 10  # failed sign-ins per client, and per token prefix, then 429
    failed_login_window_s: float = 300.0
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks); from any
    # other peer the header is ignored, so it cannot be forged to dodge the limit above.
    trusted_proxies: tuple[str, ...] = ()
    grant_ttl_s: float = 900.0  # how long a player link (one recorded access) stays usable
    secure_cookies: bool = False  # mark the console's cookie Secure (set it behind TLS)
    max_export_recordings: int = 100
    page_size_max: int = 500
    # Sign a checkpoint of this node's audit chain at start and, checked at every catalog poll,
    # once this many entries were appended or this many seconds passed with any appended.
    checkpoint_entries: int = 100
    checkpoint_s: float = 600.0


@dataclass(frozen=True)
class VerifyConfig:
    """Trust anchors for ``verify``, ``verify-package`` and the API node's catalog."""

    # A trust file: one writer key fingerprint (SHA256:...) per line, as verify prints them.
    # Unset: verify checks consistency only, and says so.
    trusted_keys: Path | None = None


@dataclass(frozen=True)
class TimestampConfig:
    """Optional RFC 3161 timestamps on checkpoints (可信时间戳); an empty ``url`` turns them off."""

    url: str = ""  # the time-stamping authority, http:// or https://
    # PEM: the TSA's signing certificate and the CA certificate(s) that issued it. Tokens are
    # checked against it (also by verify without a url), so it is required with a url.
    tsa_cert_file: Path | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Config:
    station: StationConfig = field(default_factory=StationConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    dock: DockConfig = field(default_factory=DockConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    upkeep: UpkeepConfig = field(default_factory=UpkeepConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    timestamp: TimestampConfig = field(default_factory=TimestampConfig)
    watch: tuple[WatchConfig, ...] = ()
    source: str = "defaults"

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


_SECTIONS: dict[str, type[Any]] = {
    "station": StationConfig,
    "archive": ArchiveConfig,
    "ingest": IngestConfig,
    "compliance": ComplianceConfig,
    "dock": DockConfig,
    "media": MediaConfig,
    "metrics": MetricsConfig,
    "upkeep": UpkeepConfig,
    "api": ApiConfig,
    "verify": VerifyConfig,
    "timestamp": TimestampConfig,
}

_STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate the configuration.

    ``path`` None means ``$EVIDENCE_CONFIG``, else the default path if it exists, else defaults
    only. A path that was asked for explicitly must exist.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    watches: tuple[WatchConfig, ...] = ()
    source = "defaults"
    explicit = path if path is not None else environ.get(ENV_CONFIG) or None
    config_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if explicit or config_path.exists():
        raw_file = _read_toml(config_path)
        watch_tables = raw_file.pop("watch", [])
        if not isinstance(watch_tables, list):
            raise ConfigError(f"{config_path}: watch folders are [[watch]] tables")
        watches = tuple(
            _build(f"watch[{index}]", WatchConfig, table) if isinstance(table, dict)
            else _raise(f"{config_path}: [[watch]] {index} must be a table")
            for index, table in enumerate(watch_tables)
        )
        for section, values in raw_file.items():
            if section not in _SECTIONS:
                raise ConfigError(f"{config_path}: unknown section [{section}]")
            if not isinstance(values, dict):
                raise ConfigError(f"{config_path}: [{section}] must be a table")
            raw[section].update(values)
        source = str(config_path)

    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("_")
        if section in _SECTIONS and key in _field_names(_SECTIONS[section]):
            raw[section][key] = value
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or key not in _field_names(_SECTIONS[section]):
            raise ConfigError(f"--set {dotted}: no such configuration key")
        raw[section][key] = value

    sections = {name: _build(name, cls, raw[name]) for name, cls in _SECTIONS.items()}
    config = Config(source=source, watch=watches, **sections)
    _validate(config)
    return _resolve_secrets(config)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc


def _field_names(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _build(section: str, cls: type[Any], values: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown configuration key")
        kwargs[key] = _coerce(f"{section}.{key}", known[key].type, value)
    return cls(**kwargs)


def _raise(message: str) -> Any:
    raise ConfigError(message)


def _coerce(key: str, type_name: Any, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or name the key that is wrong."""
    text = str(type_name)
    if text == "tuple[DockRule, ...]":
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(f"{key}: expected [[{key}]] tables")
        return tuple(_build(f"{key}[{index}]", DockRule, item) for index, item in enumerate(value))
    if text == "tuple[tuple[str, str], ...]":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key}: expected a table of strings, e.g. {{ vfat = \"...\" }}")
        return tuple(sorted(value.items()))
    if text.startswith("Path"):
        if text.endswith("None") and value in ("", None):
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    if text == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if text == "int":
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if text == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _validate(config: Config) -> None:
    station, archive, ingest = config.station, config.archive, config.ingest
    if not _STATION_ID.fullmatch(station.id):
        raise ConfigError(
            f"station.id: {station.id!r} must be 1-64 letters, digits, '.', '_' or '-' "
            "(it names the station's ledger in the archive)"
        )
    try:
        zoneinfo.ZoneInfo(station.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"station.timezone: unknown time zone {station.timezone!r}") from None
    if archive.backend not in ("filesystem", "s3"):
        raise ConfigError(f"archive.backend: must be 'filesystem' or 's3', got {archive.backend!r}")
    if archive.backend == "s3":
        if not archive.endpoint:
            raise ConfigError("archive.endpoint: required when archive.backend = 's3'")
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", archive.bucket):
            raise ConfigError(f"archive.bucket: {archive.bucket!r} is not a valid bucket name")
        if archive.ca_file and not os.access(archive.ca_file, os.R_OK):
            raise ConfigError(f"archive.ca_file: cannot read {archive.ca_file} (a PEM file of "
                              "the certificates to trust for archive.endpoint)")
    if not 5 <= archive.part_size_mib <= 5120:
        raise ConfigError("archive.part_size_mib: must be between 5 and 5120 (S3 part limits)")
    if archive.retention_days < 1:
        raise ConfigError("archive.retention_days: must be at least 1")
    if archive.sse not in ("", "s3"):
        raise ConfigError("archive.sse: must be '' (off) or 's3' (SSE-S3)")
    if archive.verify not in ("stream", "readback"):
        raise ConfigError("archive.verify: must be 'stream' or 'readback'")
    if not 1 <= archive.upload_workers <= 32:
        raise ConfigError("archive.upload_workers: must be between 1 and 32")
    if archive.retries < 0:
        raise ConfigError("archive.retries: must not be negative")
    if not 0 <= archive.max_upload_mbps <= 1_000_000:
        raise ConfigError("archive.max_upload_mbps: must be 0 (unlimited) or a rate in Mbit/s")
    if not 64 <= ingest.copy_chunk_kib <= 65536:
        raise ConfigError("ingest.copy_chunk_kib: must be between 64 and 65536")
    if ingest.queue_depth < 1:
        raise ConfigError("ingest.queue_depth: must be at least 1")
    for index, pattern in enumerate(ingest.filename_patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"ingest.filename_patterns[{index}]: {exc}") from None
        if "start" not in compiled.groupindex:
            raise ConfigError(f"ingest.filename_patterns[{index}]: needs a (?P<start>...) group")
    dock = config.dock
    if dock.max_concurrent_devices < 0:
        raise ConfigError("dock.max_concurrent_devices: must be 0 (every docked device at "
                          "once) or a limit of at least 1")
    if dock.settle_s < 0:
        raise ConfigError("dock.settle_s: must not be negative")
    for fstype, command in dock.mount_commands:
        if "{device}" not in command and "{busnum}" not in command or "{mountpoint}" not in command:
            raise ConfigError(f"dock.mount_commands.{fstype}: needs {{device}} and {{mountpoint}}")
    if "{mountpoint}" not in dock.unmount_command:
        raise ConfigError("dock.unmount_command: needs {mountpoint}")
    for index, rule in enumerate(dock.rules):
        where = f"dock.rules[{index}]"
        if rule.role not in ("recorder", "terminal"):
            raise ConfigError(f"{where}.role: must be 'recorder' or 'terminal', got {rule.role!r}")
        for name in ("vendor_id", "product_id"):
            if getattr(rule, name) and not re.fullmatch(r"[0-9a-fA-F]{4}", getattr(rule, name)):
                raise ConfigError(f"{where}.{name}: expected 4 hex digits")
        for name in ("serial_pattern", "label_pattern"):
            try:
                re.compile(getattr(rule, name))
            except re.error as exc:
                raise ConfigError(f"{where}.{name}: {exc}") from None
        if not (rule.vendor_id or rule.product_id or rule.serial_pattern or rule.label_pattern):
            raise ConfigError(f"{where}: give at least one of vendor_id, product_id, "
                              "serial_pattern, label_pattern (a rule matching everything is unsafe)")
    for index, watch in enumerate(config.watch):
        if watch.after not in ("keep", "move", "remove"):
            raise ConfigError(f"watch[{index}].after: must be 'keep', 'move' or 'remove'")
        if watch.stable_s < 0:
            raise ConfigError(f"watch[{index}].stable_s: must not be negative")
    api = config.api
    if not _STATION_ID.fullmatch(api.id):
        raise ConfigError(f"api.id: {api.id!r} must be 1-64 letters, digits, '.', '_' or '-' "
                          "(it names this API node's audit chain in the archive)")
    if api.id == station.id:
        raise ConfigError(f"api.id: {api.id!r} is also station.id; an API node needs a writer id "
                          "of its own")
    host, _, port = api.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"api.listen: expected host:port, got {api.listen!r}")
    if api.poll_s <= 0:
        raise ConfigError("api.poll_s: must be positive")
    if api.failed_login_limit < 1 or api.failed_login_window_s <= 0:
        raise ConfigError("api.failed_login_limit and api.failed_login_window_s: must be positive")
    for index, proxy in enumerate(api.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"api.trusted_proxies[{index}]: {proxy!r} is not an IP address or "
                              "network (e.g. \"10.0.0.5\" or \"10.0.0.0/24\")") from None
    if api.grant_ttl_s <= 0:
        raise ConfigError("api.grant_ttl_s: must be positive")
    if api.max_export_recordings < 1 or api.page_size_max < 1:
        raise ConfigError("api.max_export_recordings and api.page_size_max: must be at least 1")
    if api.checkpoint_entries < 1 or api.checkpoint_s <= 0:
        raise ConfigError("api.checkpoint_entries and api.checkpoint_s: must be positive")
    if not 0 < config.upkeep.checkpoint_s <= 3600:
        raise ConfigError("upkeep.checkpoint_s: must be positive and at most 3600 (witnessing "
                          "at least hourly is what makes a removed chain end visible)")
    if config.upkeep.leftover_age_s < 0 or config.upkeep.leftover_cleanup_s <= 0:
        raise ConfigError("upkeep.leftover_age_s must not be negative and "
                          "upkeep.leftover_cleanup_s must be positive")
    _validate_timestamp(config.timestamp)
    if config.compliance.deadline_hours <= 0:
        raise ConfigError("compliance.deadline_hours: must be positive")
    if config.compliance.at_risk_margin_hours < 0:
        raise ConfigError("compliance.at_risk_margin_hours: must not be negative")
    if config.compliance.clock_tolerance_hours < 0:
        raise ConfigError("compliance.clock_tolerance_hours: must not be negative")
    try:
        config.compliance.earliest_plausible_at(zoneinfo.ZoneInfo(station.timezone))
    except ValueError:
        raise ConfigError(f"compliance.earliest_plausible: {config.compliance.earliest_plausible!r} "
                          "is not an ISO 8601 date or time (for example \"2015-01-01\")") from None


def _validate_timestamp(timestamp: TimestampConfig) -> None:
    if timestamp.url and not re.match(r"^https?://[^/\s]+", timestamp.url):
        raise ConfigError(f"timestamp.url: expected an http:// or https:// URL of a time-stamping "
                          f"authority, got {timestamp.url!r}")
    if timestamp.url and timestamp.tsa_cert_file is None:
        raise ConfigError("timestamp.tsa_cert_file: required when timestamp.url is set (the "
                          "TSA's certificate and its CA, PEM): a token nobody can check proves "
                          "nothing")
    if timestamp.tsa_cert_file is not None and not timestamp.tsa_cert_file.is_file():
        raise ConfigError(f"timestamp.tsa_cert_file: {timestamp.tsa_cert_file} is not a "
                          "readable file")
    if timestamp.timeout_s <= 0:
        raise ConfigError("timestamp.timeout_s: must be positive")


def _resolve_secrets(config: Config) -> Config:
    archive = config.archive
    if archive.secret_key_file:
        try:
            secret = Path(archive.secret_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"archive.secret_key_file: cannot read {archive.secret_key_file}: {exc.strerror}"
            ) from exc
        archive = dataclasses.replace(archive, secret_key=secret)
    return dataclasses.replace(config, archive=archive)
