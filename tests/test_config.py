"""Configuration layering and validation: every bad value is named by its key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from evidence_daemon.config import DEFAULT_SKIP, ArchiveConfig, Config, DockRule, WatchConfig, load_config
from evidence_daemon.config.sections import SECTIONS
from evidence_daemon.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.archive.backend == "filesystem"
    assert config.archive.retention_days == 180
    assert config.ingest.skip == DEFAULT_SKIP
    assert config.spool_dir == config.station.state_dir / "spool"


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[station]\nid = "from-file"\n[archive]\npath = "/srv/file"\nupload_workers = 3\n')
    config = load_config(
        path,
        environ={"EVIDENCE_STATION_ID": "from-env", "EVIDENCE_ARCHIVE_UPLOAD_WORKERS": "4"},
        overrides={"station.id": "from-flag"},
    )
    assert config.station.id == "from-flag"
    assert config.archive.upload_workers == 4
    assert config.archive.path == Path("/srv/file")
    assert config.source == str(path)


def test_evidence_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[station]\nid = "via-variable"\n')
    assert load_config(None, environ={"EVIDENCE_CONFIG": str(path)}).station.id == "via-variable"


def test_secret_key_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    path = write(tmp_path, f'[archive]\nbackend = "s3"\nendpoint = "minio:9000"\nsecret_key_file = "{secret}"\n')
    config = load_config(path, environ={})
    assert config.archive.secret_key == "s3cr3t-value"
    assert "s3cr3t" not in repr(config)


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ('[station]\nid = "bad id!"\n', {}, "station.id"),
        ('[station]\ntimezone = "Mars/Olympus"\n', {}, "station.timezone"),
        ('[archive]\nbackend = "tape"\n', {}, "archive.backend"),
        ('[archive]\nbackend = "s3"\n', {}, "archive.endpoint"),
        ('[archive]\nbackend = "s3"\nendpoint = "m:9000"\nbucket = "Bad_Bucket"\n', {}, "archive.bucket"),
        ('[archive]\nretention_days = 0\n', {}, "archive.retention_days"),
        ('[archive]\nupload_workers = "many"\n', {}, "archive.upload_workers"),
        ('[archive]\nsecure = "perhaps"\n', {}, "archive.secure"),
        ('[archive]\npart_size_mib = 1\n', {}, "archive.part_size_mib"),
        ('[archive]\nsecret_key_file = "/nonexistent/secret"\n', {}, "archive.secret_key_file"),
        ('[archive]\nbackend = "s3"\nendpoint = "m:9000"\nca_file = "/nonexistent/ca.pem"\n', {},
         "archive.ca_file: cannot read /nonexistent/ca.pem"),
        ('[ingest]\nfilename_patterns = ["(unclosed"]\n', {}, "ingest.filename_patterns[0]"),
        ('[ingest]\nfilename_patterns = ["^(?P<device>x)"]\n', {}, "needs a (?P<start>...) group"),
        ('[ingest]\nskip = "not-a-list"\nhash_sm3 = 3\n', {}, "ingest.hash_sm3"),
        ('[ingest]\ncolour = "blue"\n', {}, "ingest.colour: unknown configuration key"),
        ('[spool]\ndir = "/x"\n', {}, "unknown section [spool]"),
        ("[station\n", {}, "is not valid TOML"),
        ("", {"EVIDENCE_ARCHIVE_RETRIES": "-1"}, "archive.retries"),
        ("", {"EVIDENCE_COMPLIANCE_DEADLINE_HOURS": "soon"}, "compliance.deadline_hours"),
        ('[compliance]\nearliest_plausible = "2015-13-01"\n', {}, "compliance.earliest_plausible"),
        ('[compliance]\nearliest_plausible = "long ago"\n', {}, "not an ISO 8601 date"),
        ('[compliance]\nclock_tolerance_hours = -1\n', {}, "compliance.clock_tolerance_hours"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(write(tmp_path, text), environ=environ)
    assert message in caught.value.message


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--set archive.colour"):
        load_config(None, environ={}, overrides={"archive.colour": "x"})


def test_list_from_environment_is_comma_separated() -> None:
    config = load_config(None, environ={"EVIDENCE_INGEST_SKIP": "*.tmp, .Trash*"})
    assert config.ingest.skip == ("*.tmp", ".Trash*")


def test_the_shipped_example_config_is_valid_and_matches_the_defaults() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "evidence-daemon.toml"
    config = load_config(example, environ={})
    defaults = Config()
    assert config.station == defaults.station
    assert config.archive == defaults.archive
    assert config.ingest == defaults.ingest
    assert config.compliance == defaults.compliance
    assert config.dock == defaults.dock
    assert config.media == defaults.media
    assert config.metrics == defaults.metrics
    assert config.upkeep == defaults.upkeep
    assert config.api == defaults.api
    assert config.verify == defaults.verify
    assert config.timestamp == defaults.timestamp
    assert config.watch == defaults.watch


def commented_example(text: str, header: str) -> set[str]:
    """The keys of a commented-out example table (``# [[watch]]`` up to the next blank line)."""
    block = text[text.index(f"# {header}\n"):].split("\n\n")[0]
    return set(re.findall(r"^# (\w+) = ", block, re.MULTILINE))


def test_the_example_config_lists_every_declared_key_with_its_default() -> None:
    """config/evidence-daemon.toml is the reference: every key the models declare is there with
    its default (an unset default and the [[dock.rules]] and [[watch]] tables as a commented
    example), and every key there is declared."""
    text = (Path(__file__).resolve().parent.parent / "config" / "evidence-daemon.toml").read_text()
    tables = tomllib.loads(text)
    assert set(tables) == set(SECTIONS)
    for section, model in SECTIONS.items():
        listed, defaults = tables[section], model()
        assert set(listed) <= set(model.model_fields), f"[{section}] lists undeclared keys"
        chunk = text[text.index(f"[{section}]\n"):]
        for key, field in model.model_fields.items():
            if section == "dock" and key == "rules":
                assert commented_example(text, "[[dock.rules]]") == set(DockRule.model_fields)
            elif field.default is None:
                assert re.search(rf"^# {key} = ", chunk, re.MULTILINE), f"{section}.{key} unlisted"
            else:
                assert key in listed, f"{section}.{key} is not in the example"
                given = getattr(model.model_validate({key: listed[key]}), key)
                assert given == getattr(defaults, key), f"{section}.{key}: not the default"
    assert commented_example(text, "[[watch]]") == set(WatchConfig.model_fields)


def test_every_key_says_what_it_is_for() -> None:
    """The help text is declared with the key (and shown in errors about its limits)."""
    for model in (*SECTIONS.values(), DockRule, WatchConfig):
        for key, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{key} has no description"


def test_dock_rules_and_watch_folders(tmp_path: Path) -> None:
    path = write(tmp_path, """
[dock]
max_concurrent_devices = 3
mount_commands = { vfat = "fusefat -o ro {device} {mountpoint}" }

[[dock.rules]]
role = "terminal"
model = "ZFY-T1"
vendor_id = "2207"
product_id = "0011"
wipe = true

[[dock.rules]]
label_pattern = "BODYCAM.*"

[[watch]]
path = "/srv/inbox/room-1"
device_id = "ROOM-1"
after = "move"
""")
    config = load_config(path, environ={})
    assert config.dock.max_concurrent_devices == 3
    assert dict(config.dock.mount_commands) == {"vfat": "fusefat -o ro {device} {mountpoint}"}
    first, second = config.dock.rules
    assert (first.role, first.model, first.vendor_id, first.wipe) == ("terminal", "ZFY-T1", "2207", True)
    assert (second.role, second.label_pattern, second.wipe) == ("recorder", "BODYCAM.*", False)
    [watch] = config.watch
    assert (watch.path, watch.device_id, watch.after, watch.stable_s) == (Path("/srv/inbox/room-1"), "ROOM-1", "move", 10.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[dock.rules]]\nrole = "camera"\nlabel_pattern = "X"\n', "dock.rules[0].role"),
        ('[[dock.rules]]\nvendor_id = "xyz"\n', "dock.rules[0].vendor_id"),
        ('[[dock.rules]]\nlabel_pattern = "("\n', "dock.rules[0].label_pattern"),
        ('[[dock.rules]]\nmodel = "any"\n', "a rule matching everything is unsafe"),
        ('[[dock.rules]]\nlabel_pattern = "X"\ncolour = "red"\n', "dock.rules[0].colour: unknown"),
        ('[dock]\nmount_commands = { vfat = "mount {device}" }\n', "dock.mount_commands.vfat"),
        ('[dock]\nunmount_command = "umount"\n', "dock.unmount_command"),
        ('[dock]\nmax_concurrent_devices = -1\n', "dock.max_concurrent_devices"),
        ('[[watch]]\npath = "/x"\nafter = "delete"\n', "watch[0].after"),
        ('[[watch]]\npath = "/x"\nstable_s = "soon"\n', "watch[0].stable_s"),
        ('watch = "x"\n', "watch folders are [[watch]] tables"),
    ],
)
def test_bad_dock_and_watch_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert message in caught.value.message


def test_the_api_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "evidence-api.toml"
    config = load_config(example, environ={})
    assert config.archive.backend == "s3" and config.api.id == "api-1"
    assert config.api == Config().api  # the example documents the defaults


def test_api_settings_are_validated_by_name(tmp_path: Path) -> None:
    for text, key in [
        ('[api]\nid = "bad id"', "api.id"),
        ('[station]\nid = "same"\n[api]\nid = "same"', "api.id"),
        ('[api]\nlisten = "8480"', "api.listen"),
        ("[api]\npoll_s = 0", "api.poll_s"),
        ("[api]\ngrant_ttl_s = -1", "api.grant_ttl_s"),
        ('[api]\ntrusted_proxies = ["10.0.0.1", "proxy.local"]', r"api.trusted_proxies\[1\]"),
        ('[api]\ntrusted_proxies = "10.0.0.0/33"', r"api.trusted_proxies\[0\]"),
    ]:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=key):
            load_config(path, environ={})


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[api]\ntrusted_proxies = ["127.0.0.1", "10.20.0.0/16", "::1"]\n')
    assert load_config(path, environ={}).api.trusted_proxies == ("127.0.0.1", "10.20.0.0/16", "::1")
    from_environment = load_config(None, environ={"EVIDENCE_API_TRUSTED_PROXIES": "10.0.0.5, fd00::/8"})
    assert from_environment.api.trusted_proxies == ("10.0.0.5", "fd00::/8")


def test_a_value_outside_its_limits_says_the_limit_and_what_the_key_is_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[archive]\nmax_upload_mbps = -1\n"), environ={})
    assert caught.value.message.startswith("archive.max_upload_mbps: must not be negative, got -1 (")
    assert "Mbit/s" in caught.value.message and "0: unlimited" in caught.value.message


def test_every_wrong_key_is_named_at_once(tmp_path: Path) -> None:
    text = "[api]\nfailed_login_limit = 0\n[upkeep]\ncheckpoint_s = 7200\n[[watch]]\nafter = \"x\"\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    for key in ("api.failed_login_limit: must be at least 1", "upkeep.checkpoint_s: must be at most 3600",
                "watch[0].after: must be 'keep', 'move' or 'remove'"):
        assert key in caught.value.message


def test_true_is_not_a_number_and_an_empty_path_is_not_a_path(tmp_path: Path) -> None:
    for text, message in [("[archive]\nretries = true\n", "archive.retries: expected an integer"),
                          ("[upkeep]\nretry_base_s = false\n", "upkeep.retry_base_s: expected a number"),
                          ('[station]\nstate_dir = ""\n', "station.state_dir: expected a path")]:
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text), environ={})
        assert message in caught.value.message


def test_a_wrongly_typed_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[archive]\nsecret_key = 73519046\n"), environ={})
    assert "archive.secret_key: expected a string" in caught.value.message
    assert "73519046" not in caught.value.message


def test_sections_built_in_code_are_checked_frozen_and_closed() -> None:
    with pytest.raises(ValueError, match="upload_workers"):
        ArchiveConfig(upload_workers=0)
    with pytest.raises(ValueError, match="colour"):
        DockRule(label_pattern="X", colour="red")  # type: ignore[call-arg]
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.archive.bucket = "other"  # type: ignore[misc]
    changed = config.model_copy(update={"archive": config.archive.model_copy(update={"retries": 1})})
    assert (changed.archive.retries, config.archive.retries) == (1, 5)
