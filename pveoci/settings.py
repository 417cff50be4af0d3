"""Settings: named profiles in config.toml, overridden by PVEOCI_* variables, then by flags.

Secrets (API token secret, password) never live in config.toml or argv: they come
from the environment or from a file only its owner can read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pveoci import userfile
from pveoci.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

ENV_PREFIX = "PVEOCI_"
CONFIG_ENV = "PVEOCI_CONFIG"
PROFILE_ENV = "PVEOCI_PROFILE"
SECRET_KEYS = ("token_secret", "password")
MAX_CONFIG_SIZE = userfile.MIB   # a settings file of many profiles is some KiB
MAX_SECRET_SIZE = 64 * userfile.KIB
_FINGERPRINT = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){31}$")
# Labels of letters (any script: requests IDNA-encodes them), digits, `_` and `-`, not at a label's ends.
_HOST_NAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?")


def default_config_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path("pveoci") / "config.toml"


def check_host(value: str | None) -> str | None:
    """A host name or an IP address (an IPv6 one may be in brackets), or None or "" (not set).

    Anything else would reach a URL (where `a:b:c` made urllib raise) or ssh's command line (where a
    leading `-` would be an option) as something other than a host.
    """
    if not value:
        return value
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        if bare == value and _HOST_NAME.fullmatch(value):
            return value
        raise ValueError("must be a host name or an IP address, e.g. pve1.example.com or 192.0.2.10") from None
    return value


class NodeSsh(BaseModel):
    """How to reach one node over SSH when its cluster address is not the right one."""

    model_config = ConfigDict(extra="forbid")

    address: Annotated[str | None, AfterValidator(check_host)] = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None


class SshSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_files: list[Path] = Field(default_factory=list)
    agent: bool = True
    known_hosts: Path = Path("~/.ssh/known_hosts")
    connect_timeout: float = Field(default=15.0, gt=0)
    # Log in as a user other than root and use `sudo -n` for what needs root on the node.
    sudo: bool = False
    # paramiko (in process) or openssh (the `ssh` client: ~/.ssh/config, ProxyJump, certificates).
    transport: Literal["paramiko", "openssh"] = "paramiko"
    config_file: Path | None = None      # OpenSSH's -F (default: its own ~/.ssh/config)
    nodes: dict[str, NodeSsh] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _config_file_needs_openssh(self) -> SshSettings:
        if self.config_file is not None and self.transport != "openssh":
            raise ValueError("config_file is read by OpenSSH only: set transport = \"openssh\" too")
        return self

    @field_validator("key_files", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value


class Profile(BaseModel):
    """One cluster's settings. Field names are the config.toml keys and, upper-cased, the PVEOCI_* names."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    host: Annotated[str | None, AfterValidator(check_host)] = None
    port: int = Field(default=8006, ge=1, le=65535)
    user: str = "root@pam"
    token_id: str | None = None
    token_secret_file: Path | None = None
    password_file: Path | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    fingerprint: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    task_timeout: float = Field(default=900.0, gt=0)
    retries: int = Field(default=5, ge=0, le=20)
    node: str = "auto"
    template_storage: str = "local"
    rootfs_storage: str = "local-lvm"
    bridge: str = "vmbr0"
    vmid_range: str | None = None
    unprivileged: bool = True
    backend: Literal["api", "pct", "auto"] = "api"
    # How the pct backend reaches the nodes: here when pveoci runs on one (pct and pvesh on PATH), else SSH.
    pct_runner: Literal["auto", "local", "ssh"] = "auto"
    ssh: SshSettings = Field(default_factory=SshSettings)

    @field_validator("fingerprint")
    @classmethod
    def _normalise_fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hexpart = re.sub(r"[^0-9A-Fa-f]", "", value.removeprefix("sha256:").removeprefix("SHA256:")).upper()
        pretty = ":".join(hexpart[i : i + 2] for i in range(0, len(hexpart), 2))
        if not _FINGERPRINT.match(pretty):
            raise ValueError("must be a SHA-256 fingerprint: 32 hex bytes, e.g. AB:CD:...")
        return pretty

    @field_validator("vmid_range")
    @classmethod
    def _check_vmid_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_vmid_range(value)
        return value

    @field_validator("token_id")
    @classmethod
    def _check_token_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\s@!]+@[^\s@!]+![A-Za-z][A-Za-z0-9._-]*", value):
            raise ValueError("must look like user@realm!tokenname")
        return value

    @field_validator("bridge")
    @classmethod
    def _check_bridge(cls, value: str) -> str:
        """It goes into net0's property string: refused here, when the settings load, as well as where net0 is
        made (pveoci.lxc.properties)."""
        from pveoci.lxc.properties import shown, why_not_bridge

        problem = why_not_bridge(value)
        if problem is not None:
            raise ValueError(f"{shown(value)} cannot go into Proxmox's net0: {problem}")
        return value

    @property
    def api_user(self) -> str:
        """The user the API acts as: the token's user for token auth."""
        return self.token_id.split("!", 1)[0] if self.token_id else self.user

    @property
    def auth_method(self) -> str:
        return "token" if self.token_id else "ticket"


VMID_MIN, VMID_MAX = 100, 999_999_999   # PVE's pve-vmid


def parse_vmid_range(text: str) -> tuple[int, int]:
    """`9000-9099` (or one VMID) as (first, last); a ValueError that says what is wrong."""
    match = re.fullmatch(r"([0-9]{1,9})(?:-([0-9]{1,9}))?", text.strip())
    if match is None:
        raise ValueError(f"{text!r} must look like 9000-9099")
    first, last = int(match[1]), int(match[2] or match[1])
    if not VMID_MIN <= first <= last <= VMID_MAX:
        raise ValueError(f"{text!r} must be FIRST-LAST with FIRST <= LAST, within {VMID_MIN}-{VMID_MAX}")
    return first, last


@dataclass
class Settings:
    """The effective profile, with where each value came from (for `config show`)."""

    profile: Profile
    config_path: Path
    sources: dict[str, str] = field(default_factory=dict)
    # Only the PVEOCI_* variables (secrets among them): never shown, never the whole environment.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def secret(self, key: Literal["token_secret", "password"]) -> str:
        """The secret from PVEOCI_<KEY> or from <key>_file; a ConfigError when neither is set or safe."""
        env_name = ENV_PREFIX + key.upper()
        if self.env.get(env_name):
            return self.env[env_name]
        path = self.profile.token_secret_file if key == "token_secret" else self.profile.password_file
        if path is None:
            raise ConfigError(
                f"no {key.replace('_', ' ')} for profile '{self.profile.name}': "
                f"set {env_name} or {key}_file in {self.config_path}"
            )
        return read_secret_file(path)

    def secret_source(self, key: Literal["token_secret", "password"]) -> str | None:
        """Where the secret would come from, without reading it."""
        env_name = ENV_PREFIX + key.upper()
        if self.env.get(env_name):
            return f"env {env_name}"
        path = self.profile.token_secret_file if key == "token_secret" else self.profile.password_file
        return f"file {path}" if path else None


def read_secret_file(path: Path) -> str:
    """A secret from a file that only its owner can read; the first line, stripped."""
    path = path.expanduser()
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        raise ConfigError(
            f"secret file {path} is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}"
        )
    try:
        # A pipe too (`PVEOCI_TOKEN_SECRET_FILE=<(pass show pve)`); never a device, never without a size limit.
        text = userfile.read(path, MAX_SECRET_SIZE, pipes=True).decode("utf-8")
    except userfile.Refused as exc:
        raise ConfigError(f"cannot read secret file {path}: it {exc}") from None
    except UnicodeDecodeError as exc:  # not the codec's words: they quote the byte, a secret's
        raise ConfigError(f"cannot read secret file {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ConfigError(f"secret file {path} is empty")
    return secret


def _read_config(path: Path) -> dict[str, Any]:
    try:
        # A pipe too (`--config <(...)`); never a device, never without a size limit.
        raw = userfile.read(path, MAX_CONFIG_SIZE, pipes=True)
    except FileNotFoundError:
        return {}
    except userfile.Refused as exc:
        raise ConfigError(f"cannot read {path}: it {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")  # TOML is UTF-8 (toml.io: "A TOML file must be a valid UTF-8 encoded document")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 text (byte {exc.start})") from None
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: nested too deeply") from None
    except ValueError:  # what else the reader refuses: an integer of thousands of digits
        raise ConfigError(f"{path} is not valid TOML: a number too long to read") from None


def _tables(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The file's profiles and the name of its default one."""
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of named profiles")
    unknown_top = set(data) - {"default_profile", "profiles"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level setting(s): {', '.join(sorted(unknown_top))}")
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{path}: default_profile must be a profile's name, in quotes")
    return profiles, default


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """PVEOCI_<FIELD> for profile fields, PVEOCI_SSH_<FIELD> for the ssh table."""
    out: dict[str, Any] = {}
    for name in Profile.model_fields:
        if name in ("name", "ssh"):
            continue
        value = env.get(ENV_PREFIX + name.upper())
        if value not in (None, ""):
            out[name] = value
    ssh: dict[str, Any] = {}
    for name in SshSettings.model_fields:
        if name == "nodes":
            continue
        value = env.get(ENV_PREFIX + "SSH_" + name.upper())
        if value not in (None, ""):
            ssh[name] = value
    if ssh:
        out["ssh"] = ssh
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _sources(layer: Mapping[str, Any], label: str, out: dict[str, str], prefix: str = "") -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping):
            _sources(value, label, out, f"{prefix}{key}.")
        else:
            out[prefix + key] = label


def _describe(exc: ValidationError, origin: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "profile"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        parts.append(f"{where}: {msg}")
    return f"invalid settings ({origin}): " + "; ".join(parts)


def load(
    *,
    profile: str | None = None,
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The effective settings: config file profile, then PVEOCI_* variables, then explicit overrides.

    An override given as None removes the setting (back to its default), e.g. token_id=None for a
    ticket login with a profile that names a token.
    """
    env = dict(os.environ if env is None else env)
    path = (config_path or Path(env.get(CONFIG_ENV) or default_config_path())).expanduser()
    profiles, default = _tables(path, _read_config(path))
    name = profile or env.get(PROFILE_ENV) or default or "default"
    file_layer = profiles.get(name)
    if file_layer is None:
        explicit = profile or env.get(PROFILE_ENV)
        if explicit and explicit != "default":
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"no profile '{name}' in {path} (profiles: {known})")
        file_layer = {}
    if not isinstance(file_layer, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    for key in SECRET_KEYS:
        if key in file_layer:
            raise ConfigError(
                f"{path}: profiles.{name}.{key} would keep a secret in the config file; "
                f"put it in a file only you can read and set {key}_file, or set {ENV_PREFIX}{key.upper()}"
            )
    env_layer = _env_overrides(env)
    flag_layer = {k: v for k, v in (overrides or {}).items() if v is not None}
    unset = [k for k, v in (overrides or {}).items() if v is None]
    sources: dict[str, str] = {}
    _sources(file_layer, f"file {path}", sources)
    _sources(env_layer, "environment", sources)
    _sources(flag_layer, "flag", sources)
    merged = _merge(_merge(dict(file_layer), env_layer), flag_layer)
    for key in unset:
        merged.pop(key, None)
        sources[key] = "flag"
    merged["name"] = name
    try:
        model = Profile.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"profile '{name}'")) from None
    ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return Settings(profile=model, config_path=path, sources=sources, env=ours)


EXAMPLE_HEADER = """\
# pveoci settings: one [profiles.NAME] table per cluster.
# Pick a profile with --profile NAME or PVEOCI_PROFILE; every key can be
# overridden by PVEOCI_<KEY> (PVEOCI_SSH_<KEY> for the ssh table).
default_profile = {name}

"""

EXAMPLE_PROFILE = """\
[profiles.{key}]
host = {host}                # any node of the cluster (the API proxies to the others)
port = 8006
# API token auth (recommended). The secret comes from PVEOCI_TOKEN_SECRET or from
# token_secret_file, a file only you can read (chmod 600).
token_id = "pveoci@pve!cli"
token_secret_file = {token_file}
# Ticket auth instead: set user and a password_file (or PVEOCI_PASSWORD).
# user = "root@pam"
# password_file = {password_file}

# TLS is verified against the system CAs by default. For PVE's own CA, point
# ca_file at a copy of /etc/pve/pve-root-ca.pem, or pin the certificate with
# its SHA-256 fingerprint (as `pveoci doctor` or the node's summary shows it).
verify_tls = true
# ca_file = {ca_file}
# fingerprint = "AB:CD:..."

timeout = 30                    # seconds for one API request
task_timeout = 900              # seconds to wait for a Proxmox task
node = "auto"                   # or a node name
template_storage = "local"      # where templates are uploaded (content vztmpl)
rootfs_storage = "local-lvm"    # where container root disks go (content rootdir)
bridge = "vmbr0"
unprivileged = true
backend = "api"                 # api; pct (pct/pvesh on the nodes, as root); auto (the API, pct over SSH
                                # when the API cannot be reached)
# pct_runner = "auto"           # pct backend: local on a node, else ssh (to host, then each node)

[profiles.{key}.ssh]
user = "root"
port = 22
agent = true
key_files = ["~/.ssh/id_ed25519"]
known_hosts = "~/.ssh/known_hosts"  # host keys are checked, never accepted blindly
# transport = "openssh"         # OpenSSH's ssh client: your ~/.ssh/config (ProxyJump...) holds
# config_file = "~/.ssh/config-lab"   # with openssh: another ssh_config (ssh -F)

# A node whose SSH address is not the one the cluster reports:
# [profiles.{key}.ssh.nodes.pve2]
# address = "203.0.113.12"
# port = 2222
"""

PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def secrets_dir() -> str:
    """Where `config init` points a profile's secret files: the platform config dir's pveoci/ (on Linux
    $XDG_CONFIG_HOME/pveoci, else ~/.config/pveoci), written with ~ for the home directory."""
    from platformdirs import user_config_path

    folder = user_config_path("pveoci")
    home = Path.home()
    return f"~/{folder.relative_to(home)}" if folder.is_relative_to(home) else str(folder)


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, so no value can end the string or the line (DEL, which
    JSON leaves as it is, TOML refuses: escaped too)."""
    import json

    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def example_profile(name: str = "default", host: str = "pve1.example.com", secrets: str | None = None) -> str:
    """The commented [profiles.NAME] tables `config init` writes; `secrets`: the directory of its secret files
    (default: secrets_dir()). ConfigError for a name that cannot be a profile's (a TOML bare key, a file name)."""
    if not PROFILE_NAME.fullmatch(name):
        raise ConfigError(f"profile name {name!r}: use letters, digits, '_' and '-' (starting with a letter or "
                          "digit)")
    folder = (secrets or secrets_dir()).rstrip("/")
    return EXAMPLE_PROFILE.format(key=name, host=toml_string(host),
                                  token_file=toml_string(f"{folder}/{name}.token"),
                                  password_file=toml_string(f"{folder}/{name}.password"),
                                  ca_file=toml_string(f"{folder}/{name}-ca.pem"))


def example_config(name: str = "default", host: str = "pve1.example.com", secrets: str | None = None) -> str:
    """A whole commented config.toml with one profile, its default."""
    return EXAMPLE_HEADER.format(name=toml_string(name)) + example_profile(name, host, secrets)
