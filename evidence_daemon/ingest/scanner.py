"""Walking a mounted device or directory tree, without ever leaving it.

Works on bytes paths so names that are not UTF-8 (old FAT cards, hostile names) survive exactly.
Symbolic links are reported and never followed; device nodes, FIFOs and sockets are reported and
never opened; OS junk (``.DS_Store``, ``System Volume Information``, …) is left out by name.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

FILE = "file"
SYMLINK = "symlink"
SPECIAL = "special"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Found:
    """One entry of the tree, relative to its root."""

    rel_path: bytes
    kind: str  # FILE, SYMLINK, SPECIAL or UNREADABLE (a directory that cannot be listed)
    size_bytes: int = 0
    mtime_ns: int = 0
    reason: str | None = None

    @property
    def display_path(self) -> str:
        return display_path(self.rel_path)

    @property
    def rel_path_b64(self) -> str | None:
        """The raw name, base64, when it is not valid UTF-8 (else None)."""
        try:
            self.rel_path.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(self.rel_path).decode("ascii")
        return None


def display_path(raw: bytes) -> str:
    """A printable form of a raw path: invalid UTF-8 bytes appear as ``\\xNN``."""
    return raw.decode("utf-8", errors="backslashreplace")


def is_junk(name: str, skip: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in skip)


def scan_tree(root: bytes, skip: Sequence[str]) -> Iterator[Found]:
    """Yield every entry under ``root`` in a stable (sorted) order; junk is left out."""
    stack: list[bytes] = [b""]
    while stack:
        relative_dir = stack.pop()
        directory = os.path.join(root, relative_dir) if relative_dir else root
        try:
            with os.scandir(directory) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as exc:
            yield Found(relative_dir or b".", UNREADABLE, reason=f"cannot list directory: {exc.strerror}")
            continue
        subdirectories = []
        for entry in entries:
            name = entry.name
            if is_junk(display_path(name), skip):
                continue
            relative = os.path.join(relative_dir, name) if relative_dir else name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                yield Found(relative, UNREADABLE, reason=f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISLNK(info.st_mode):
                try:
                    target = display_path(os.readlink(entry.path))
                except OSError:
                    target = "?"
                yield Found(relative, SYMLINK, reason=f"symbolic link to {target!r}; links are never followed")
            elif stat.S_ISDIR(info.st_mode):
                subdirectories.append(relative)
            elif stat.S_ISREG(info.st_mode):
                yield Found(relative, FILE, size_bytes=info.st_size, mtime_ns=info.st_mtime_ns)
            else:
                yield Found(relative, SPECIAL, reason="not a regular file (device, FIFO or socket); not opened")
        stack.extend(reversed(subdirectories))


def scan_paths(root: bytes, paths: Sequence[bytes], skip: Sequence[str]) -> Iterator[Found]:
    """Like ``scan_tree``, for the given paths under ``root`` only (a watch folder's ready files).

    A path that leaves the root, or is gone, is skipped: its folder's next event brings it back.
    """
    for relative in sorted(set(paths)):
        parts = relative.split(b"/")
        if relative.startswith(b"/") or any(part in (b"", b".", b"..") for part in parts):
            continue
        if any(is_junk(display_path(part), skip) for part in parts):
            continue
        path = os.path.join(root, relative)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            yield Found(relative, UNREADABLE, reason=f"cannot stat: {exc.strerror}")
            continue
        if stat.S_ISLNK(info.st_mode):
            yield Found(relative, SYMLINK, reason="symbolic link; links are never followed")
        elif stat.S_ISREG(info.st_mode):
            yield Found(relative, FILE, size_bytes=info.st_size, mtime_ns=info.st_mtime_ns)
        elif not stat.S_ISDIR(info.st_mode):
            yield Found(relative, SPECIAL, reason="not a regular file (device, FIFO or socket); not opened")
