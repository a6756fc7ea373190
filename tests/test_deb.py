"""The Debian package on this machine: built from a fresh clone, installed with apt-get, used as
the installed program with the installed config, checked by udevadm and systemd-analyze, purged.

What must never happen: a purge that deletes the archive or the station's signing key; a purge
that leaves anything else of the package behind; the installed program writing under /opt.

The test installs into the real /etc, /opt, /var/lib and /srv, so it refuses (skips) on a
machine where any of them already holds evidence-daemon's things (a real station), and it
removes everything it made, the package included, even when it fails.

udev: Debian 12's udevadm (systemd 252) has no `udevadm verify`; `udevadm test DEVPATH` reads the
rules and applies them to a device without a running udevd, printing each rules file read and
the properties set. It is run on a loop device holding a FAT image labelled BODYCAM, which the
package's rules must tag as a recorder. A rules file of the same name in /etc/udev/rules.d would
replace the package's (tests/dock_fixtures.py installs one while a session lasts): it is moved
aside for the check. `systemd-analyze verify FILE` works without systemd as PID 1.
"""

from __future__ import annotations

import hashlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .faultlog import FaultLog
from .footage import make_video

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "evidence-daemon"
PROGRAM = Path("/usr/bin/evidence-daemon")
CONFIG = Path("/etc/evidence-daemon/config.toml")
ARCHIVE = Path("/srv/evidence-archive")
STATE = Path("/var/lib/evidence-daemon")
API_STATE = Path("/var/lib/evidence-api")
STATION_KEY = STATE / "keys" / "station.ed25519"
USERS = ("evidence", "evidence-api")
UNITS = ("evidence-daemon.service", "evidence-daemon-ingest@.service", "evidence-api.service")
UDEV_RULES = "99-evidence-dock.rules"
UDEV_OVERRIDE = Path("/etc/udev/rules.d") / UDEV_RULES
# Paths the test installs into; any of them present means this machine is not ours to purge.
INSTALLED_STATE = (ARCHIVE, STATE, API_STATE, Path("/etc/evidence-daemon"), Path("/opt/evidence-daemon"))
BUILD_TIMEOUT_S = 900


def run(argv: Sequence[str | Path], *, cwd: Path | None = None, timeout_s: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout_s, check=False)


def installed_program_env() -> dict[str, str]:
    """The environment of an operator's shell: nothing pointing Python at this checkout."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTHON", "VIRTUAL_ENV", "EVIDENCE_"))}
    return env | {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}


def package_installed() -> bool:
    result = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    return result.returncode == 0 and "installed" in result.stdout


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def require_a_machine_to_install_on() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (installs and purges the Debian package)")
    for tool in ("dpkg-deb", "apt-get", "dpkg-query", "git", "udevadm", "losetup", "mkfs.vfat",
                 "systemd-analyze", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (scripts/test installs it)")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs Debian's /usr/bin/python3")
    if package_installed():
        pytest.skip(f"{PACKAGE} is installed on this machine; the test would purge it")
    for path in INSTALLED_STATE:
        if path.exists():
            pytest.skip(f"{path} exists: a station's; the test installs and purges over it")
    for user in USERS:
        if user_exists(user) or group_exists(user):
            pytest.skip(f"the user or group {user} exists; the test would delete it")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: what "nothing written" is measured on."""
    found = {}
    for path in [root, *root.rglob("*")]:
        status = path.lstat()
        found[str(path)] = (status.st_size, status.st_mtime_ns)
    return found


def make_card(root: Path) -> list[Path]:
    """A recorder's card: two clips named as recorders name them, and a note."""
    started = datetime.now() - timedelta(hours=1)
    clips = [
        make_video(root / "DCIM" / "100MEDIA" / f"DSJ001_10086_{started:%Y%m%d%H%M%S}_{seq:04d}.MP4",
                   seconds=1, size="160x120", rate=5, audio=False,
                   creation_time=f"{started:%Y-%m-%d}T0{seq}:00:00Z")
        for seq in (1, 2)
    ]
    note = root / "DCIM" / "NOTE.TXT"
    note.write_text("shift 2026-11 town A\n")
    return [*clips, note]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archived_digests() -> set[str]:
    """SHA-256 of every original in the filesystem archive (recordings/<sha256>/original*)."""
    return {sha256(path) for path in ARCHIVE.glob("recordings/*/original*") if path.is_file()}


@pytest.fixture
def package_machine() -> Iterator[None]:
    """Cleans up whatever the test leaves: the package, its users, its directories."""
    require_a_machine_to_install_on()
    srv_existed = ARCHIVE.parent.exists()
    udev_override = UDEV_OVERRIDE.read_bytes() if UDEV_OVERRIDE.exists() else None
    try:
        yield
    finally:
        if package_installed():
            run(["dpkg", "--purge", PACKAGE], env=installed_program_env(), timeout_s=300)
        for path in INSTALLED_STATE:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        if not srv_existed and ARCHIVE.parent.is_dir() and not any(ARCHIVE.parent.iterdir()):
            ARCHIVE.parent.rmdir()
        for user in USERS:
            if user_exists(user):
                run(["userdel", user])
            if group_exists(user):
                run(["groupdel", user])
        if udev_override is not None:
            UDEV_OVERRIDE.write_bytes(udev_override)


def build_from_a_fresh_clone(clone: Path) -> tuple[Path, float]:
    cloned = run(["git", "clone", "--quiet", PROJECT_ROOT, clone])
    assert cloned.returncode == 0, cloned.stderr
    started = time.monotonic()
    built = run([clone / "scripts" / "build-deb"], cwd=clone, timeout_s=BUILD_TIMEOUT_S,
                env=installed_program_env())
    assert built.returncode == 0, built.stdout + built.stderr
    version = tomllib.loads((clone / "pyproject.toml").read_text())["project"]["version"]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = clone / "dist" / f"{PACKAGE}_{version}_{arch}.deb"
    assert deb.is_file(), f"no {deb.name} in dist/: {sorted(p.name for p in deb.parent.iterdir())}"
    return deb, time.monotonic() - started


def check_udev_sees_the_rules(tmp_path: Path) -> None:
    if UDEV_OVERRIDE.exists():
        UDEV_OVERRIDE.unlink()  # the fixture puts it back
    image = tmp_path / "bodycam.img"
    with image.open("wb") as sparse:
        sparse.truncate(8 * 1024 * 1024)
    made = run(["mkfs.vfat", "-n", "BODYCAM", image])
    assert made.returncode == 0, made.stderr
    attached = run(["losetup", "--find", "--show", image])
    assert attached.returncode == 0, attached.stderr
    loop = attached.stdout.strip()
    try:
        tested = run(["udevadm", "test", f"/sys/class/block/{Path(loop).name}"], timeout_s=60)
    finally:
        run(["losetup", "--detach", loop])
    output = tested.stdout + tested.stderr
    read = [line for line in output.splitlines()
            if line.startswith("Reading rules file:") and line.endswith("/" + UDEV_RULES)]
    assert read and "/lib/udev/rules.d/" in read[0], output[-3000:]
    assert "EVIDENCE_ROLE=recorder" in output.splitlines(), output[-3000:]


def check_systemd_accepts_the_units() -> None:
    for unit in UNITS:
        installed = Path("/lib/systemd/system") / unit
        assert installed.is_file(), installed
        assert f"ExecStart={PROGRAM} " in installed.read_text(), unit
        verified = run(["systemd-analyze", "verify", installed], timeout_s=60)
        ours = [line for line in (verified.stdout + verified.stderr).splitlines()
                if unit.replace("@.service", "@") in line]
        assert verified.returncode == 0 and ours == [], verified.stdout + verified.stderr


def test_the_package_installs_archives_a_card_and_purges_to_the_evidence_and_keys(
        package_machine: None, tmp_path: Path, fault_log: FaultLog) -> None:
    env = installed_program_env()
    deb, build_s = build_from_a_fresh_clone(tmp_path / "clone")
    # "drwxr-xr-x root/root 0 2026-11-30 01:05 ./opt/evidence-daemon/bin/python -> python3"
    shipped = [Path("/") / line.split(maxsplit=5)[5].split(" -> ")[0].removeprefix("./")
               for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines()]
    there_before = {path for path in shipped if path.exists()}  # /, /etc, /usr/bin, ...

    installed = run(["apt-get", "install", "-y", "--no-install-recommends", f"./{deb.name}"],
                    cwd=deb.parent, env=env, timeout_s=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    files = [Path(line) for line in run(["dpkg", "-L", PACKAGE]).stdout.splitlines() if line]
    assert PROGRAM in files and Path("/opt/evidence-daemon/bin/evidence-daemon") in files

    # what postinst made: users, private state directories, configs only their group reads
    for directory, owner in ((STATE, "evidence"), (API_STATE, "evidence-api"), (ARCHIVE, "evidence")):
        status = directory.stat()
        assert (pwd.getpwuid(status.st_uid).pw_name, status.st_mode & 0o777) == (owner, 0o750), directory
    for config, group in ((CONFIG, "evidence"), (CONFIG.with_name("api.toml"), "evidence-api")):
        status = config.stat()
        assert (grp.getgrgid(status.st_gid).gr_name, status.st_mode & 0o777) == (group, 0o640), config

    opt_before = tree(Path("/opt/evidence-daemon"))
    version = run([PROGRAM, "--version"], env=env, cwd=tmp_path)
    assert version.returncode == 0 and deb.name.split("_")[1] in version.stdout, version
    helped = run([PROGRAM, "--help"], env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "ingest" in helped.stdout and "verify" in helped.stdout, helped

    card = make_card(tmp_path / "card")
    ingested = run([PROGRAM, "--config", CONFIG, "ingest", tmp_path / "card"], env=env, cwd=tmp_path,
                   timeout_s=300)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    verified = run([PROGRAM, "--config", CONFIG, "verify"], env=env, cwd=tmp_path, timeout_s=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"verified {len(card)} recording(s)" in verified.stdout, verified.stdout
    assert f"in file://{ARCHIVE}" in verified.stdout, verified.stdout
    assert archived_digests() == {sha256(path) for path in card}
    key = STATION_KEY.read_bytes()
    fingerprint = re.search(r"ledger writer station: key (SHA256:\S+)", verified.stdout)
    assert fingerprint is not None, verified.stdout
    assert tree(Path("/opt/evidence-daemon")) == opt_before, "the installed program wrote under /opt"

    check_udev_sees_the_rules(tmp_path)
    check_systemd_accepts_the_units()

    purged = run(["apt-get", "purge", "-y", PACKAGE], env=env, timeout_s=300)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not package_installed()
    left = [path for path in files if (path.exists() or path.is_symlink()) and path not in there_before]
    assert left == [], left[:20]
    for gone in (Path("/opt/evidence-daemon"), Path("/etc/evidence-daemon"), API_STATE,
                 STATE / "state.sqlite3", STATE / "spool"):
        assert not gone.exists(), gone
    for user in USERS:
        assert not user_exists(user) and not group_exists(user), user

    # never deleted by a purge: the archive and the signing key, and the operator is told so
    lost = len({sha256(path) for path in card} - archived_digests())
    kept_key = STATION_KEY.exists() and STATION_KEY.read_bytes() == key
    message = "\n".join(line for line in purged.stdout.splitlines() if "never deletes" in line)
    fault_log("operator removes the software", "apt-get purge of a station that archived a card",
              injected_by="apt-get purge -y evidence-daemon", files_lost=lost, wrongly_archived=0,
              duplicates=0, exit_code=purged.returncode, message=message)
    assert lost == 0, f"{lost} recording(s) of the card gone from {ARCHIVE} after the purge"
    assert kept_key, f"the purge deleted or changed the station key {STATION_KEY}"
    assert f"{ARCHIVE}/" in purged.stdout and f"{STATION_KEY.parent}/" in purged.stdout, purged.stdout
    # ... and what it kept is still a whole archive, signed by the same station key: checked
    # with this checkout's program, the package's being gone
    still = run([sys.executable, "-m", "evidence_daemon", "--set", f"archive.path={ARCHIVE}",
                 "--set", f"station.state_dir={tmp_path / 'auditor'}", "verify",
                 "--trust", fingerprint.group(1)], cwd=PROJECT_ROOT, timeout_s=300)
    assert still.returncode == 0 and f"verified {len(card)} recording(s)" in still.stdout, \
        still.stdout + still.stderr
    print(f"build-deb from a fresh clone: {build_s:.0f} s; {deb.name}: {deb.stat().st_size / 1e6:.1f} MB")
