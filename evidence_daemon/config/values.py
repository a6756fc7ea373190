"""Value types of configuration keys: how a TOML, environment or ``--set`` value becomes one.

Each is a type with its pydantic validators attached (``Annotated``), so a key's declaration in
``sections.py`` says in one word what it accepts. A refused value raises ``Invalid`` with the
operator's wording; the loader prefixes the key. What must never happen: a value accepted here
that the code using it cannot take (a regular expression that does not compile, a mount
command without ``{mountpoint}``).
"""

from __future__ import annotations

from enum import StrEnum

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from ..i18n import _


class Invalid(ValueError):
    """A refused value; ``key`` (``"endpoint"``, ``"vfat"``) names it below where it was seen."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def _listed(value: Any) -> Any:
    """Lists from the environment or ``--set`` are comma-separated."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _given_path(value: Any) -> Any:
    if value == "":
        raise Invalid(_("expected a path, got ''"))
    return value


def _unset_if_empty(value: Any) -> Any:
    return None if value == "" else value


def _writer_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise Invalid(_("{value!r} must be 1-64 letters, digits, '.', '_' or '-' (it names a "
                        "writer's ledger in the archive)").format(value=value))
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(str(exc)) from None
    return value


def _filename_pattern(value: str) -> str:
    if "start" not in re.compile(_regex(value)).groupindex:
        raise Invalid(_("needs a (?P<start>...) group"))
    return value


def _usb_id(value: str) -> str:
    if value and not re.fullmatch(r"[0-9a-fA-F]{4}", value):
        raise Invalid(_("expected 4 hex digits"))
    return value


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Invalid(_("{value!r} is not an IP address or network (e.g. \"10.0.0.5\" or "
                        "\"10.0.0.0/24\")").format(value=value)) from None
    return value


def _mount_commands(value: Any) -> Any:
    """A TOML table ``{ vfat = "..." }`` becomes sorted (type, command) pairs."""
    if isinstance(value, dict):
        if not all(isinstance(command, str) for command in value.values()):
            raise Invalid(_("expected a table of strings, e.g. { vfat = \"...\" }"))
        value = sorted(value.items())
    if not isinstance(value, (list, tuple)):
        raise Invalid(_("expected a table of strings, e.g. { vfat = \"...\" }"))
    for fstype, command in value:
        if "{device}" not in command and "{busnum}" not in command or "{mountpoint}" not in command:
            raise Invalid(_("needs {device} and {mountpoint}"), key=fstype)
    return value


def _unmount_command(value: str) -> str:
    if "{mountpoint}" not in value:
        raise Invalid(_("needs {mountpoint}"))
    return value


def _host_port(value: str) -> str:
    host, _colon, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(_("expected host:port, got {value!r}").format(value=value))
    return value


def _readable_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise Invalid(_("{value} is not a readable file").format(value=value))
    return value


StrList = Annotated[tuple[str, ...], BeforeValidator(_listed)]
GivenPath = Annotated[Path, BeforeValidator(_given_path)]
OptionalPath = Annotated[Path | None, BeforeValidator(_unset_if_empty)]
WriterId = Annotated[str, AfterValidator(_writer_id)]
Regex = Annotated[str, AfterValidator(_regex)]
UsbId = Annotated[str, AfterValidator(_usb_id)]
FilenamePatterns = Annotated[
    tuple[Annotated[str, AfterValidator(_filename_pattern)], ...], BeforeValidator(_listed)
]
IpNetworks = Annotated[
    tuple[Annotated[str, AfterValidator(_ip_network)], ...], BeforeValidator(_listed)
]
MountCommands = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_mount_commands)]
UnmountCommand = Annotated[str, AfterValidator(_unmount_command)]
HostPort = Annotated[str, AfterValidator(_host_port)]
ReadableFile = Annotated[
    Path | None, BeforeValidator(_unset_if_empty), AfterValidator(_readable_file)
]


class After(StrEnum):
    """``watch.after``: what an inbox folder does with a file once its archived copy verifies."""

    KEEP = "keep"
    MOVE = "move"  # to the folder's done/ area
    REMOVE = "remove"
