"""Settings: profiles from TOML, PVEOCI_* overrides, flags, and safe secrets."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pveoci import settings
from pveoci.errors import ConfigError
from tests.guards import fifo_released_after, memory_cap

CONFIG = """
default_profile = "lab"

[profiles.lab]
host = "pve1.lab"
token_id = "pveoci@pve!cli"
token_secret_file = "{secret}"
node = "pve1"

[profiles.lab.ssh]
port = 2222
key_files = ["~/.ssh/id_lab"]

[profiles.lab.ssh.nodes.pve2]
address = "10.0.0.12"

[profiles.prod]
host = "pve.prod"
user = "ops@pve"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    secret = tmp_path / "lab.token"
    secret.write_text("s3cr3t-token\n")
    secret.chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(secret=secret))
    return path


def test_default_profile_comes_from_the_file(config: Path) -> None:
    s = settings.load(config_path=config, env={})
    assert s.profile.name == "lab"
    assert s.profile.host == "pve1.lab"
    assert s.profile.ssh.port == 2222
    assert s.profile.ssh.nodes["pve2"].address == "10.0.0.12"
    assert s.profile.port == 8006  # default
    assert s.sources["host"] == f"file {config}"
    assert s.sources["ssh.nodes.pve2.address"] == f"file {config}"


def test_environment_overrides_file_and_flags_override_environment(config: Path) -> None:
    env = {"PVEOCI_HOST": "pve2.lab", "PVEOCI_NODE": "pve2", "PVEOCI_SSH_PORT": "22", "PVEOCI_TIMEOUT": "5"}
    s = settings.load(config_path=config, env=env, overrides={"host": "pve3.lab"})
    assert s.profile.host == "pve3.lab"
    assert s.profile.node == "pve2"
    assert s.profile.ssh.port == 22
    assert s.profile.timeout == 5.0
    assert s.sources["host"] == "flag"
    assert s.sources["node"] == "environment"
    assert s.sources["ssh.port"] == "environment"


def test_profile_is_chosen_by_flag_then_environment(config: Path) -> None:
    assert settings.load(config_path=config, env={"PVEOCI_PROFILE": "prod"}).profile.host == "pve.prod"
    s = settings.load(config_path=config, profile="lab", env={"PVEOCI_PROFILE": "prod"})
    assert s.profile.name == "lab"


def test_config_path_comes_from_the_environment(config: Path) -> None:
    assert settings.load(env={"PVEOCI_CONFIG": str(config)}).profile.host == "pve1.lab"


def test_unknown_profile_names_the_known_ones(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"no profile 'staging' .*profiles: lab, prod"):
        settings.load(config_path=config, profile="staging", env={})


def test_missing_file_gives_defaults_that_env_can_fill(tmp_path: Path) -> None:
    s = settings.load(config_path=tmp_path / "none.toml", env={"PVEOCI_HOST": "h"})
    assert s.profile.name == "default"
    assert s.profile.host == "h"


def test_unknown_setting_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[profiles.default]\nhots = "x"\n')
    with pytest.raises(ConfigError, match=r"hots: unknown setting"):
        settings.load(config_path=path, env={})


def test_bad_value_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[profiles.default]\nport = 70000\n')
    with pytest.raises(ConfigError, match=r"port: Input should be less than or equal to 65535"):
        settings.load(config_path=path, env={})


def test_ssh_config_file_without_the_openssh_transport_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[profiles.default.ssh]\nconfig_file = "~/.ssh/config"\n')
    with pytest.raises(ConfigError, match=r'ssh: config_file is read by OpenSSH only: set transport = "openssh"'):
        settings.load(config_path=path, env={})
    s = settings.load(config_path=path, env={"PVEOCI_SSH_TRANSPORT": "openssh"})
    assert (s.profile.ssh.transport, s.profile.ssh.config_file) == ("openssh", Path("~/.ssh/config"))
    with pytest.raises(ConfigError, match=r"transport: Input should be 'paramiko' or 'openssh'"):
        settings.load(config_path=path, env={"PVEOCI_SSH_TRANSPORT": "putty"})


def test_broken_toml_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[profiles.default\nhost = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        settings.load(config_path=path, env={})


@pytest.mark.parametrize("key", ["token_secret", "password"])
def test_secret_in_the_config_file_is_refused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[profiles.default]\nhost = "h"\n{key} = "hunter2"\n')
    with pytest.raises(ConfigError, match=f"{key}_file") as err:
        settings.load(config_path=path, env={})
    assert "hunter2" not in str(err.value)


def test_secret_from_environment_wins_over_file(config: Path) -> None:
    s = settings.load(config_path=config, env={"PVEOCI_TOKEN_SECRET": "from-env"})
    assert s.secret("token_secret") == "from-env"
    assert s.secret_source("token_secret") == "env PVEOCI_TOKEN_SECRET"


def test_secret_from_owner_only_file(config: Path) -> None:
    s = settings.load(config_path=config, env={})
    assert s.secret("token_secret") == "s3cr3t-token"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601])
def test_secret_file_readable_by_others_is_refused(config: Path, mode: int) -> None:
    s = settings.load(config_path=config, env={})
    assert s.profile.token_secret_file is not None
    s.profile.token_secret_file.chmod(mode)
    with pytest.raises(ConfigError, match=rf"accessible by group or others \(mode {mode:04o}\); run: chmod 600"):
        s.secret("token_secret")


def test_missing_secret_says_where_to_put_it(tmp_path: Path) -> None:
    s = settings.load(config_path=tmp_path / "none.toml", env={"PVEOCI_HOST": "h"})
    with pytest.raises(ConfigError, match="set PVEOCI_PASSWORD or password_file"):
        s.secret("password")


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        settings.read_secret_file(secret)


@pytest.mark.parametrize("given_fp", [
    "ab:cd:" * 15 + "ab:cd",
    "AB" * 32,
    "sha256:" + "ab" * 32,
    " ".join(["AB"] * 32),
])
def test_fingerprint_is_normalised(given_fp: str) -> None:
    profile = settings.Profile(fingerprint=given_fp)
    assert profile.fingerprint is not None
    assert len(profile.fingerprint.split(":")) == 32
    assert profile.fingerprint == profile.fingerprint.upper()


@pytest.mark.parametrize("bad", ["AB:CD", "zz" * 32, "AB" * 31, "AB" * 33])
def test_bad_fingerprint_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256 fingerprint"):
        settings.Profile(fingerprint=bad)


@given(st.binary(min_size=32, max_size=32), st.sampled_from([":", "", " "]), st.booleans())
def test_any_sha256_fingerprint_spelling_normalises_to_the_same(raw: bytes, sep: str, upper: bool) -> None:
    text = sep.join(f"{b:02x}" for b in raw)
    text = text.upper() if upper else text
    assert settings.Profile(fingerprint=text).fingerprint == ":".join(f"{b:02X}" for b in raw)


def test_token_id_must_name_user_realm_and_token() -> None:
    assert settings.Profile(token_id="pveoci@pve!cli").api_user == "pveoci@pve"
    with pytest.raises(ValueError, match="user@realm!tokenname"):
        settings.Profile(token_id="pveoci@pve")


def test_example_config_is_valid_and_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(settings.example_config("lab", "pve9.lab"))
    s = settings.load(config_path=path, env={})
    assert s.profile.name == "lab"
    assert s.profile.host == "pve9.lab"
    assert s.profile.token_id == "pveoci@pve!cli"


def test_default_config_path_is_the_platform_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert settings.default_config_path() == tmp_path / "pveoci" / "config.toml"


def test_key_files_from_environment_split_on_pathsep(tmp_path: Path) -> None:
    env = {"PVEOCI_SSH_KEY_FILES": os.pathsep.join(["/a/key", "/b/key"])}
    s = settings.load(config_path=tmp_path / "none.toml", env=env)
    assert s.profile.ssh.key_files == [Path("/a/key"), Path("/b/key")]


def test_secret_file_mode_check_uses_the_real_file(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x" * 8)
    secret.chmod(0o400)
    assert settings.read_secret_file(secret) == "x" * 8
    assert stat.S_IMODE(secret.stat().st_mode) == 0o400


def test_settings_keep_neither_the_environment_nor_a_secret_in_their_repr(tmp_path: Path) -> None:
    env = {"PVEOCI_HOST": "pve1.lab", "PVEOCI_TOKEN_SECRET": "s3cret-value", "AWS_SECRET_ACCESS_KEY": "other-secret",
           "HOME": "/home/someone"}
    loaded = settings.load(config_path=tmp_path / "none.toml", env=env)
    shown = repr(loaded)
    for value in ("s3cret-value", "other-secret", "/home/someone", "AWS_SECRET_ACCESS_KEY"):
        assert value not in shown
    assert "AWS_SECRET_ACCESS_KEY" not in loaded.env
    assert loaded.secret("token_secret") == "s3cret-value"


# --- a settings file made to hurt, and ranges that name nothing ---


def test_a_config_toml_that_is_not_utf8_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[profiles.default]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:  # 0.2: UnicodeDecodeError, exit 70
        settings.load(config_path=path, env={})
    assert caught.value.message == f"{path} is not valid TOML: not UTF-8 text (byte 30)"
    assert caught.value.exit_code == 3


def test_a_config_toml_integer_of_5000_digits_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[profiles.default]\nport = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"c\.toml is not valid TOML: a number too long to read$"):
        settings.load(config_path=path, env={})


def test_a_config_toml_linked_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.symlink_to("/dev/zero")
    with memory_cap(), pytest.raises(ConfigError) as caught:  # 0.2 read it until no memory was left
        settings.load(config_path=path, env={})
    assert caught.value.message == f"cannot read {path}: it is not a regular file (a character device)"


def test_a_config_toml_fifo_nobody_writes_reads_as_empty_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    os.mkfifo(path)
    began = time.monotonic()
    with fifo_released_after(path, 10.0):  # 0.2 waited for a writer forever (here: the guard's)
        loaded = settings.load(config_path=path, env={"PVEOCI_HOST": "h"})
    assert time.monotonic() - began < 10.0
    assert loaded.profile.host == "h"


def test_a_config_toml_from_a_pipe_is_read_to_its_end(tmp_path: Path) -> None:
    """`pveoci --config <(generate)`: a pipe, whose writer may still be writing."""
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (time.sleep(0.2), os.write(write_end, b'[profiles.default]\n'),
                                              time.sleep(0.2), os.write(write_end, b'host = "piped"\n'),
                                              os.close(write_end)))
    writer.start()
    try:
        loaded = settings.load(config_path=Path(f"/proc/self/fd/{read_end}"), env={})
    finally:
        writer.join()
        os.close(read_end)
    assert loaded.profile.host == "piped"


@pytest.mark.parametrize(("value", "words"), [
    ("abc", "'abc' must look like 9000-9099"),
    ("9000-", "'9000-' must look like 9000-9099"),
    ("1-2-3", "'1-2-3' must look like 9000-9099"),
    ("٩٠٠٠-٩٠٩٩", "'٩٠٠٠-٩٠٩٩' must look like 9000-9099"),
    ("9999-9000", "'9999-9000' must be FIRST-LAST with FIRST <= LAST, within 100-999999999"),
    ("99-200", "'99-200' must be FIRST-LAST with FIRST <= LAST, within 100-999999999"),
])
def test_a_bad_vmid_range_is_refused_when_the_settings_load(tmp_path: Path, value: str, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[profiles.default]\nvmid_range = "{value}"\n')
    with pytest.raises(ConfigError) as caught:  # 0.2 took it, and failed at the first create, after the network
        settings.load(config_path=path, env={})
    assert caught.value.message == f"invalid settings (profile 'default'): vmid_range: {words}"
    with pytest.raises(ConfigError, match="vmid_range: "):
        settings.load(config_path=tmp_path / "none.toml", env={"PVEOCI_VMID_RANGE": value})


@pytest.mark.parametrize(("value", "parsed"), [("9000-9099", (9000, 9099)), ("100", (100, 100)),
                                               ("100-999999999", (100, 999_999_999))])
def test_a_vmid_range_is_first_and_last(value: str, parsed: tuple[int, int]) -> None:
    assert settings.parse_vmid_range(value) == parsed
    assert settings.Profile(vmid_range=value).vmid_range == value


@pytest.mark.parametrize("host", ["a:b:c", "[::1", "-oProxyCommand=touch /tmp/x", "h/x", "user@h", "a b", "h..x"])
def test_a_host_that_is_no_host_name_or_address_is_refused(tmp_path: Path, host: str) -> None:
    # 0.2: "a:b:c" and "[::1" made urllib raise ValueError (exit 70); a leading "-" reached ssh's command line.
    with pytest.raises(ConfigError) as caught:
        settings.load(config_path=tmp_path / "none.toml", env={"PVEOCI_HOST": host})
    assert caught.value.message == ("invalid settings (profile 'default'): host: must be a host name or an IP "
                                    "address, e.g. pve1.example.com or 192.0.2.10")
    path = tmp_path / "c.toml"
    path.write_text(f'[profiles.default.ssh.nodes.pve2]\naddress = "{host}"\n')
    with pytest.raises(ConfigError, match=r"ssh\.nodes\.pve2\.address: must be a host name or an IP address"):
        settings.load(config_path=path, env={})


@pytest.mark.parametrize("host", ["pve1.example.com", "pve1", "192.0.2.10", "2001:db8::1", "[2001:db8::1]",
                                  "pvé.example", "node_1.lab.", ""])
def test_host_names_and_addresses_are_taken(tmp_path: Path, host: str) -> None:
    assert settings.load(config_path=tmp_path / "none.toml", overrides={"host": host}, env={}).profile.host == host


@pytest.mark.parametrize("value", ["[1]", "{a = 1}", "5"])
def test_a_default_profile_that_is_no_name_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"default_profile = {value}\n")
    with pytest.raises(ConfigError) as caught:  # 0.2: TypeError unhashable type, exit 70
        settings.load(config_path=path, env={})
    assert caught.value.message == f"{path}: default_profile must be a profile's name, in quotes"


def test_a_secret_file_that_is_a_fifo_nobody_writes_is_empty_at_once(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    os.mkfifo(secret, 0o600)
    began = time.monotonic()
    with fifo_released_after(secret, 10.0), pytest.raises(ConfigError) as caught:  # 0.2 waited for a writer
        settings.read_secret_file(secret)
    assert time.monotonic() - began < 10.0
    assert caught.value.message == f"secret file {secret} is empty"


def test_a_secret_from_a_pipe_is_read(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"s3cret\n")
    os.close(write_end)
    try:
        assert settings.read_secret_file(Path(f"/proc/self/fd/{read_end}")) == "s3cret"
    finally:
        os.close(read_end)


def test_a_secret_file_that_is_not_utf8_is_refused_without_quoting_it(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_bytes(b"s3\xffcret")
    secret.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        settings.read_secret_file(secret)
    assert caught.value.message == f"cannot read secret file {secret}: not UTF-8 text (byte 2)"
