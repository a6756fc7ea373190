"""Configuration: defaults < TOML file < ``EVIDENCE_*`` environment < command-line overrides.

Loaded once at start-up into frozen models (``config/sections.py`` declares every key with its
type, default, limits and help) and validated there, so a bad value stops the daemon with an
error that names the key (``archive.bucket``), never half-way through an ingest. This module
only layers the sources, reads secret files and words pydantic's errors for the operator.

Environment overrides are ``EVIDENCE_<SECTION>_<KEY>`` (``EVIDENCE_ARCHIVE_PATH=/srv/a``);
command-line overrides are ``--set section.key=value``. Lists given that way are comma-separated.
Secrets may be given as ``*_file`` keys pointing at a file (systemd credentials); the file's
content wins and is never logged.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .sections import (
    DEFAULT_FILENAME_PATTERNS,
    DEFAULT_MOUNT_COMMANDS,
    DEFAULT_PRIORITY_PATTERNS,
    DEFAULT_SKIP,
    SECTIONS,
    ApiConfig,
    ArchiveConfig,
    ComplianceConfig,
    Config,
    DockConfig,
    DockRule,
    IngestConfig,
    MediaConfig,
    MetricsConfig,
    StationConfig,
    TimestampConfig,
    UpkeepConfig,
    VerifyConfig,
    WatchConfig,
)
from .values import After, Invalid
from ..i18n import _

__all__ = [
    "After",
    "DEFAULT_CONFIG_PATH", "DEFAULT_FILENAME_PATTERNS", "DEFAULT_MOUNT_COMMANDS",
    "DEFAULT_PRIORITY_PATTERNS", "DEFAULT_SKIP", "ApiConfig", "ArchiveConfig", "ComplianceConfig",
    "Config", "DockConfig", "DockRule", "IngestConfig", "MediaConfig", "MetricsConfig",
    "StationConfig", "TimestampConfig", "UpkeepConfig", "VerifyConfig", "WatchConfig",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/evidence-daemon/config.toml")
ENV_CONFIG = "EVIDENCE_CONFIG"
ENV_PREFIX = "EVIDENCE_"


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
    raw: dict[str, Any] = {name: {} for name in SECTIONS}
    explicit = path if path is not None else environ.get(ENV_CONFIG) or None
    config_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if explicit or config_path.exists():
        raw.update(_file_sections(config_path))
        raw["source"] = str(config_path)

    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        section, _sep, key = name[len(ENV_PREFIX):].lower().partition("_")
        if section in SECTIONS and key in SECTIONS[section].model_fields:
            raw[section][key] = value
    for dotted, value in (overrides or {}).items():
        section, _dot, key = dotted.partition(".")
        if section not in SECTIONS or key not in SECTIONS[section].model_fields:
            raise ConfigError(_("--set {dotted}: no such configuration key").format(dotted=dotted))
        raw[section][key] = value

    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("; ".join(_explain(error) for error in exc.errors())) from None
    return _read_secrets(config)


def _file_sections(path: Path) -> dict[str, Any]:
    """The file's tables, each checked to be a known section (``[[watch]]`` a list of them)."""
    try:
        with path.open("rb") as handle:
            tables = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("configuration file {path} is not valid TOML: {exc}").format(
            path=path, exc=exc)) from exc
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise ConfigError(_("configuration file {path} does not exist").format(path=path) if missing
                          else _("cannot read configuration file {path}: {strerror}").format(
                              path=path, strerror=exc.strerror)) from exc
    watch = tables.get("watch", [])
    if not isinstance(watch, list):
        raise ConfigError(_("{path}: watch folders are [[watch]] tables").format(path=path))
    for index, table in enumerate(watch):
        if not isinstance(table, dict):
            raise ConfigError(_("{path}: [[watch]] {index} must be a table").format(
                path=path, index=index))
    for section, values in tables.items():
        if section != "watch" and section not in SECTIONS:
            raise ConfigError(_("{path}: unknown section [{section}]").format(
                path=path, section=section))
        if section != "watch" and not isinstance(values, dict):
            raise ConfigError(_("{path}: [{section}] must be a table").format(
                path=path, section=section))
    return tables


def _read_secrets(config: Config) -> Config:
    archive = config.archive
    if not archive.secret_key_file:
        return config
    try:
        secret = Path(archive.secret_key_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            _("archive.secret_key_file: cannot read {secret_key_file}: {strerror}").format(
                secret_key_file=archive.secret_key_file, strerror=exc.strerror)
        ) from exc
    return config.model_copy(update={"archive": archive.model_copy(update={"secret_key": secret})})


# -- pydantic's errors in the operator's words, naming the key --------------------------------

_KINDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
    "path": "a path", "tuple": "a list", "list": "a list", "model": "a table",
}
_BOUNDS = {"greater_than_equal": "must be at least {}", "greater_than": "must be greater than {}",
           "less_than_equal": "must be at most {}", "less_than": "must be less than {}"}
_PLAIN = {"must be at least 0": "must not be negative",
          "must be greater than 0": "must be positive"}


def _explain(error: ErrorDetails) -> str:
    """``archive.part_size_mib: must be at least 5, got 1 (multipart part size in MiB; ...)``."""
    loc, kind, context = error["loc"], error["type"], error.get("ctx") or {}
    reason = context.get("error")
    if isinstance(reason, Invalid) and reason.key:
        loc = (*loc, *reason.key.split("."))
    key, field = _dotted(loc), _field(loc)
    given = f", got {error.get('input')!r}" if field is None or field.repr else ""
    if kind == "extra_forbidden":
        return f"{key}: unknown configuration key"
    if isinstance(reason, Invalid):  # worded by hand where the value was checked
        return f"{key}: {reason}"
    if kind in _BOUNDS:
        bound = next(context[name] for name in ("ge", "gt", "le", "lt") if name in context)
        rule = _BOUNDS[kind].format(int(bound) if float(bound).is_integer() else bound)
        rule = _PLAIN.get(rule, rule)
    elif kind in ("literal_error", "enum"):
        rule = f"must be {context['expected']}"
    else:
        expected = next((words for name, words in _KINDS.items() if kind.startswith(name)), None)
        rule = f"expected {expected}" if expected else error["msg"]
    help_text = f" ({field.description})" if field is not None and field.description else ""
    return f"{key}: {rule}{given}{help_text}"


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``("dock", "rules", 0, "role")`` -> ``dock.rules[0].role``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _field(loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The declaration of the key at ``loc`` (None below a key: ``dock.mount_commands.vfat``)."""
    model: type[BaseModel] | None = Config
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = next((arg for arg in (field.annotation, *typing.get_args(field.annotation))
                      if isinstance(arg, type) and issubclass(arg, BaseModel)), None)
    return field
