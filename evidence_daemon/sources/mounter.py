"""Mounting a docked device read-only under the runtime directory, and proving it is.

The mount itself is whatever ``dock.mount_commands`` says for the filesystem type: a kernel
``mount`` or a FUSE helper (``fusefat``, ``mount.exfat-fuse``, ``jmtpfs``). Commands are split
with ``shlex`` and run without a shell; device names and paths are substituted into single
arguments, so nothing udev reports can be read as shell syntax or as an extra option.

The command's word is not trusted: after it returns, ``/proc/self/mountinfo`` must show a mount
at the mountpoint that is read-only. A writable mount is unmounted at once and refused, since
evidence must never be mounted writable. Missing ``nosuid``/``nodev``/``noexec`` (exfat-fuse
drops ``noexec``) are added with a bind remount, which changes only this mount's flags.

Never write to a device here; the only way to a writable mount is ``remount_writable``, which the
opt-in wipe calls after the whole device is archived.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import DockConfig
from ..errors import DeviceError
from .rules import DeviceInfo, DockMatch
from ..i18n import _

log = logging.getLogger(__name__)

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

MOUNTINFO = Path("/proc/self/mountinfo")
HARDENED_OPTIONS = ("ro", "nosuid", "nodev", "noexec")
_IDENTITY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_PLACEHOLDER = re.compile(r"\{(device|mountpoint|busnum|devnum|identity|model)\}")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo (proc(5)), with the escapes in paths decoded."""

    mountpoint: str
    options: frozenset[str]  # per-mount: ro, nosuid, nodev, noexec, relatime, ...
    fs_type: str  # "ext4", "fuseblk", "fuse.fusefat", ...
    source: str  # "/dev/loop0", or what a FUSE helper calls itself ("fusefat")
    super_options: frozenset[str]  # the filesystem's own: ro/rw, user_id=0, ...

    @property
    def read_only(self) -> bool:
        # The kernel refuses writes when either the mount or its superblock is read-only.
        return "ro" in self.options or "ro" in self.super_options

    @property
    def is_fuse(self) -> bool:
        return self.fs_type == "fuse" or self.fs_type.startswith(("fuse.", "fuseblk"))


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse /proc/self/mountinfo; lines that do not have the documented shape are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            fs_type, source, super_options = fields[separator + 1: separator + 4]
        except ValueError:
            continue
        entries.append(MountEntry(
            mountpoint=_unescape(fields[4]),
            options=frozenset(fields[5].split(",")),
            fs_type=fs_type,
            source=_unescape(source),
            super_options=frozenset(super_options.split(",")),
        ))
    return entries


def find_mount(entries: Sequence[MountEntry], path: str | Path) -> MountEntry | None:
    """The mount visible at ``path`` (the last one: later mounts stack on earlier ones)."""
    wanted = os.path.realpath(path)
    found = None
    for entry in entries:
        if entry.mountpoint == wanted:
            found = entry
    return found


def substitute(template: str, values: Mapping[str, str]) -> list[str]:
    """Split a command template into arguments, then fill in the placeholders of each one.

    Splitting first means a value with spaces or quotes stays one argument, whatever it holds.
    """
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise DeviceError(_("cannot parse command {template!r}: {exc}").format(
            template=template, exc=exc)) from exc
    return [_PLACEHOLDER.sub(lambda found: values.get(found.group(1), found.group(0)), word)
            for word in words]


class Mounter:
    """Mounts docked devices read-only at ``<runtime_dir>/mnt/<identity>``."""

    def __init__(
        self,
        dock_config: DockConfig,
        *,
        run: Runner = subprocess.run,
        mountinfo_path: Path = MOUNTINFO,
        timeout_s: float = 60.0,
    ) -> None:
        self.config = dock_config
        self.mount_root = dock_config.runtime_dir / "mnt"
        self._run = run
        self._mountinfo_path = mountinfo_path
        self._timeout_s = timeout_s
        self._commands = dict(dock_config.mount_commands)

    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path:
        """Mount the device read-only and return the mountpoint, or raise DeviceError."""
        template = self._commands.get(info.fs_type)
        if template is None:
            known = ", ".join(sorted(self._commands)) or "none"
            raise DeviceError(_("{devnode}: no mount command for filesystem type {value!r} "
                                "(dock.mount_commands has {known})").format(
                                    devnode=info.devnode, value=info.fs_type or 'unknown', known=known))
        if not _IDENTITY.fullmatch(identity):
            raise DeviceError(_("{identity!r} cannot name a mountpoint").format(identity=identity))
        mountpoint = self.mount_root / identity
        values = {
            "device": info.devnode, "mountpoint": str(mountpoint), "identity": identity,
            "busnum": _number(info.bus_num), "devnum": _number(info.dev_num), "model": match.model,
        }
        self._prepare(info, mountpoint)
        if match.rule is not None and match.rule.pre_mount:
            self._execute(substitute(match.rule.pre_mount, values), f"pre-mount hook for {identity}")
        self._make_mountpoint(mountpoint)
        try:
            self._execute(substitute(template, values), f"mounting {info.devnode} ({info.fs_type})")
        except DeviceError:
            _remove_empty_dir(mountpoint)
            raise
        entry = find_mount(self._mounts(), mountpoint)
        if entry is None:
            _remove_empty_dir(mountpoint)
            raise DeviceError(_("mounting {devnode} ({fs_type}) reported success, but nothing is "
                                "mounted at {mountpoint}").format(
                                    devnode=info.devnode, fs_type=info.fs_type, mountpoint=mountpoint))
        if not entry.read_only:
            log.error(_("%s was mounted writable at %s (%s); unmounting it at once"),
                      info.devnode, mountpoint, ",".join(sorted(entry.options)))
            try:
                self.unmount(mountpoint)
            except DeviceError as exc:
                raise DeviceError(_("{devnode} was mounted writable at {mountpoint} and could not "
                                    "be unmounted: {exc}").format(
                                        devnode=info.devnode, mountpoint=mountpoint, exc=exc)) from exc
            raise DeviceError(_("refusing {devnode}: the {fs_type} mount command mounted it "
                                "writable; evidence is only ever mounted read-only (check "
                                "dock.mount_commands)").format(
                                    devnode=info.devnode, fs_type=info.fs_type))
        self._harden(mountpoint, entry)
        log.info("mounted %s (%s) read-only at %s", info.devnode, info.fs_type, mountpoint)
        return mountpoint

    def unmount(self, mountpoint: Path) -> None:
        """Unmount and remove the mountpoint. An already unmounted path is not an error.

        When the unmount command fails (device gone, files still open), the mount is detached
        lazily (``umount -l``): it disappears from the tree now, the kernel finishes later.
        """
        if find_mount(self._mounts(), mountpoint) is not None:
            command = substitute(self.config.unmount_command, {"mountpoint": str(mountpoint)})
            try:
                self._execute(command, f"unmounting {mountpoint}")
            except DeviceError as exc:
                if find_mount(self._mounts(), mountpoint) is not None:
                    log.warning(_("%s; detaching it lazily"), exc)
                    try:
                        self._execute(["umount", "-l", str(mountpoint)], f"lazy unmount of {mountpoint}")
                    except DeviceError:
                        if find_mount(self._mounts(), mountpoint) is not None:
                            raise
        if mountpoint.parent == self.mount_root:
            _remove_empty_dir(mountpoint)

    def remount_writable(self, mountpoint: Path, info: DeviceInfo) -> None:
        """Make a mounted device writable, for the opt-in wipe after a verified archive.

        Only kernel filesystems: a FUSE helper was started read-only and cannot switch.
        """
        entry = find_mount(self._mounts(), mountpoint)
        if entry is None:
            raise DeviceError(_("{mountpoint} is not mounted").format(mountpoint=mountpoint))
        if entry.is_fuse:
            raise DeviceError(_("remounting read-write is not supported for {fs_type} ({fs_type2} "
                                "mount at {mountpoint})").format(
                                    fs_type=info.fs_type, fs_type2=entry.fs_type, mountpoint=mountpoint))
        self._execute(["mount", "-o", "remount,rw,nosuid,nodev,noexec", str(mountpoint)],
                      f"remounting {mountpoint} read-write")
        entry = find_mount(self._mounts(), mountpoint)
        if entry is None or entry.read_only:
            raise DeviceError(_("{mountpoint} is still read-only after remounting it read-write").format(
                mountpoint=mountpoint))
        log.warning(_("%s (%s) remounted read-write for the wipe"), mountpoint, info.devnode)

    # -- helpers ---------------------------------------------------------------------------------

    def _prepare(self, info: DeviceInfo, mountpoint: Path) -> None:
        """Clear a stale mount of ours (daemon killed while docked); refuse a device that is
        mounted somewhere else (an automounter may have it writable)."""
        mounts = self._mounts()
        if find_mount(mounts, mountpoint) is not None:
            log.warning(_("%s is still mounted from an earlier dock; unmounting it"), mountpoint)
            self.unmount(mountpoint)
            mounts = self._mounts()
        if info.devnode:
            device = os.path.realpath(info.devnode)
            elsewhere = [entry.mountpoint for entry in mounts
                         if entry.source.startswith("/") and os.path.realpath(entry.source) == device]
            if elsewhere:
                raise DeviceError(_("{devnode} is already mounted at {join}; unmount it first (an "
                                    "automounter may hold it writable)").format(
                                        devnode=info.devnode, join=', '.join(elsewhere)))

    def _make_mountpoint(self, mountpoint: Path) -> None:
        try:
            self.mount_root.mkdir(mode=0o750, parents=True, exist_ok=True)
            mountpoint.mkdir(mode=0o750, exist_ok=True)
            os.chmod(mountpoint, 0o750)  # mkdir's mode is filtered by the umask
            if any(mountpoint.iterdir()):
                raise DeviceError(_("mountpoint {mountpoint} is not empty; not mounting over it").format(
                    mountpoint=mountpoint))
        except OSError as exc:
            raise DeviceError(_("cannot create mountpoint {mountpoint}: {strerror}").format(
                mountpoint=mountpoint, strerror=exc.strerror)) from exc

    def _harden(self, mountpoint: Path, entry: MountEntry) -> None:
        missing = [option for option in HARDENED_OPTIONS if option not in entry.options]
        if not missing:
            return
        try:
            self._execute(["mount", "-o", "remount,bind," + ",".join(HARDENED_OPTIONS),
                           str(mountpoint)], f"adding {','.join(missing)} to {mountpoint}")
        except DeviceError as exc:
            # Still read-only, so still safe for evidence; only the defence in depth is missing.
            log.warning("%s", exc)

    def _execute(self, argv: list[str], what: str) -> None:
        try:
            result = self._run(argv, capture_output=True, text=True, check=False,
                               stdin=subprocess.DEVNULL, timeout=self._timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeviceError(f"{what}: {cannot_run(argv[0], exc, self._timeout_s)}") from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() or "no message"
            raise DeviceError(_("{what} failed (exit {returncode}): {detail}").format(
                what=what, returncode=result.returncode, detail=detail))

    def _mounts(self) -> list[MountEntry]:
        try:
            return parse_mountinfo(self._mountinfo_path.read_text(encoding="utf-8",
                                                                  errors="surrogateescape"))
        except OSError as exc:
            raise DeviceError(_("cannot read {mountinfo_path}: {strerror}").format(
                mountinfo_path=self._mountinfo_path, strerror=exc.strerror)) from exc


def cannot_run(program: str, exc: OSError | subprocess.TimeoutExpired, timeout_s: float) -> str:
    """Why a mount helper did not run to its end, said shortly. Pure."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{program} did not finish in {timeout_s:g} s"
    if isinstance(exc, FileNotFoundError):
        return f"{program} not found (is its package installed?)"
    return f"cannot run {program}: {exc.strerror}"


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda found: chr(int(found.group(1), 8)), field)


def _number(text: str) -> str:
    """USB bus and device numbers as plain integers ("003" -> "3"), as jmtpfs expects them."""
    return str(int(text)) if text.isdigit() else text


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning(_("cannot remove mountpoint %s: %s"), path, exc.strerror)
