"""Make a demo body-camera card: a few real clips (ffmpeg) named the way recorders name them.

Used by scripts/demo; the clips come from tests/footage.py so the demo and the tests film the
same kind of footage. Times are relative to now, so the compliance column shows every case.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.footage import make_video, truncate_half  # noqa: E402


def main(root: Path, timezone: str) -> None:
    zone = ZoneInfo(timezone)
    now = datetime.now(zone).replace(microsecond=0)

    def clip(name_device: str, officer: str, started: datetime, seq: int, seconds: float) -> Path:
        stamp = started.strftime("%Y%m%d%H%M%S")
        path = root / "DCIM" / "100MEDIA" / f"{name_device}_{officer}_{stamp}_{seq:04d}.MP4"
        # recorders write their clock into the file, which also makes every clip unique
        make_video(path, seconds=seconds,
                   creation_time=started.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"))
        end = (started + timedelta(seconds=seconds)).timestamp()
        os.utime(path, (end, end))
        return path

    first = clip("DSJ001", "10086", now - timedelta(hours=2), 1, 3)  # this shift: on time
    clip("DSJ001", "10086", now - timedelta(hours=1), 2, 2)
    clip("DSJ001", "10086", now - timedelta(days=2), 3, 2)  # docked two days late: late
    cut = clip("DSJ001", "10086", now - timedelta(minutes=30), 4, 2)
    truncate_half(cut)  # battery died mid-recording: archived, flagged unplayable
    # the officer copied a clip to a second folder: one recording, two sources
    backup = root / "BACKUP"
    backup.mkdir()
    shutil.copy2(first, backup)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # OS junk: left out


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "Asia/Shanghai")
