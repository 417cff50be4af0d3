"""Proxmox VE 9.1's OCI image support, as a bed node does it: pull an image from a registry into a template storage,
recognise an OCI archive at create, unpack its layers and turn its config into container options.

Modelled on (read them before changing this):
- pve-storage `src/PVE/API2/Storage/Status.pm` `oci_registry_pull`, `src/PVE/Storage.pm`
  `normalize_content_filename`; pve-manager `PVE/API2/Nodes.pm` `query_oci_repo_tags`;
- pve-container `src/PVE/LXC/Create.pm` `archive_is_oci_format`, `restore_oci_archive`, `resolve_oci_user`, and
  its caller `create_vm` in `src/PVE/API2/LXC.pm`;
- proxmox-rs `proxmox-oci` (`parse_and_extract_image`, `OciTarImage::image_manifest`), which pve-rs binds as
  `PVE::RS::OCI`;
- pve-common `PVE::Tools::run_command` and `cmd2string` (String::ShellQuote) for the words of errors and commands.

The layers are applied by Debian's `umoci` (whiteouts, opaque directories), an independent implementation of the
OCI layer rules, never pveoci's. Each function names the PVE code it stands for; the bed's own departures are said
where they are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fakepve.lxc import normalise

from tests.testbed.lxc import LxcError

SKOPEO = "/usr/bin/skopeo"  # PVE checks this very path (`-f '/usr/bin/skopeo'`)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# PVE's $has_ctrl_char. Its range starts at \x10, not \x0a: TAB to SI (\x09-\x0f, newline among them) pass, as on PVE.
PVE_CTRL = re.compile(r"[\x00-\x08\x10-\x1F\x7F]")
# String::ShellQuote: a word with anything else is quoted.
_SHELL_SAFE = re.compile(r"[^\w!%+,\-./:=@^]")


# ----------------------------------------------------------------- words of PVE


def normalize_content_filename(name: str) -> str:
    """PVE::Storage::normalize_content_filename: the last path component, every other character than
    [a-zA-Z0-9_.-] made `_`."""
    name = name.removesuffix("\n")  # chomp
    name = re.sub(r"^.*[/\\]", "", name)
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", name)


def shell_quote(word: str) -> str:
    """String::ShellQuote::shell_quote of one word, as PVE::Tools::cmd2string calls it: quoted when it has an
    unsafe character or (alone in its call, hence always) an `=`."""
    if word == "":
        return "''"
    if "=" not in word and not _SHELL_SAFE.search(word):
        return word
    quoted = word.replace("'", "'\\''")
    quoted = re.sub(r"((?:'\\''){2,})", lambda m: "'\"" + "'" * (len(m.group(1)) // 4) + "\"'", quoted)
    quoted = f"'{quoted}'"
    return re.sub(r"''$", "", re.sub(r"^''", "", quoted))


def cmd2string(argv: Sequence[str]) -> str:
    """PVE::Tools::cmd2string: how PVE writes a command into an error message or an `entrypoint`."""
    return " ".join(shell_quote(word) for word in argv)


def _perl_true(value: object) -> bool:
    """`if (my $x = ...)` on a scalar: "" and "0" are false too."""
    return value is not None and value not in ("", "0")


def _perl_split(line: str, sep: str) -> list[str]:
    """Perl's split on a plain separator: trailing empty fields dropped."""
    fields = line.split(sep) if line else []
    while fields and fields[-1] == "":
        fields.pop()
    return fields


# ------------------------------------------------------------------ registries


def registry_of(reference: str) -> str:
    """The registry host (and port) an image reference names; docker.io when its first component is no host."""
    first, slash, _rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def refuse_remote(reference: str) -> None:
    """The bed never reaches the network: a registry other than one on loopback is refused (a bed error)."""
    registry = registry_of(reference)
    host = registry.rsplit(":", 1)[0]
    with contextlib.suppress(ValueError):
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return
    raise LxcError(f"the test bed reaches only registries on loopback, not {registry}")


def skopeo_env(home: Path) -> dict[str, str]:
    """The environment of a node's skopeo. PVE's run_command sets LC_ALL=C; HOME and REGISTRY_AUTH_FILE point into
    the node's own directory, where no credentials are stored: a registry that asks for them fails as on a PVE
    node, whatever the machine running the tests has in ~/.docker or /run/containers."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(home), "LC_ALL": "C",
            "REGISTRY_AUTH_FILE": str(home / "containers-auth.json")}


def skopeo_argv(words: Sequence[str], cert_dir: Path | None, option: str) -> list[str]:
    """skopeo with `words`; with cert_dir, `option` (--src-cert-dir, --cert-dir) after the subcommand. The cert dir
    is the bed's stand-in for a node's system CA store (a PVE node trusts a registry through that)."""
    extra = [option, str(cert_dir)] if cert_dir is not None else []
    return [SKOPEO, words[0], *extra, *words[1:]]


async def run_logged(argv: Sequence[str], shown: str, log: list[str], env: Mapping[str, str]) -> None:
    """Run a command, its output lines into a task log as they come (a PVE worker's stdout and stderr are its log);
    a failure is run_command's `command '...' failed: ...` naming `shown`. Killed if the task is cancelled."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            log.append(raw.decode(errors="replace").rstrip("\r\n"))
        code = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if code < 0:
        raise LxcError(f"command '{shown}' failed: got signal {-code}")
    if code:
        raise LxcError(f"command '{shown}' failed: exit code {code}")


async def list_tags(reference: str, cert_dir: Path | None, env: Mapping[str, str]) -> list[str]:
    """query_oci_repo_tags: `skopeo list-tags docker://REF`, its `Tags`."""
    words = ["list-tags", f"docker://{reference}"]
    code, out = await _output(skopeo_argv(words, cert_dir, "--cert-dir"), env)
    if code:
        raise LxcError(f"command '{cmd2string(['skopeo', *words])}' failed: exit code {code}")
    tags: list[str] = json.loads(out)["Tags"]
    return tags


async def _output(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """(exit status, stdout) of a command; stderr is dropped (PVE's goes to the daemon's log). Killed if the request
    or task is cancelled."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL, env=None if env is None else dict(env))
    try:
        out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    assert proc.returncode is not None
    return proc.returncode, out


# ------------------------------------------------------------------- archives


async def is_oci_archive(archive: Path) -> bool:
    """archive_is_oci_format: an uncompressed `.tar` whose listing has `oci-layout`, `index.json` and `blobs/` at its
    top. A listing that fails fails the create, as run_command dies."""
    if not archive.name.endswith(".tar"):
        return False
    code, out = await _output(["tar", "-tf", str(archive)])
    if code:
        raise LxcError(f"command '{cmd2string(['tar', '-tf', str(archive)])}' failed: exit code {code}")
    names = out.decode(errors="surrogateescape").splitlines()
    return "oci-layout" in names and "index.json" in names and any(n.startswith("blobs/") for n in names)


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = str(digest).partition(":")
    return layout / "blobs" / algorithm / hexdigest


def first_manifest(index: Mapping[str, Any]) -> dict[str, Any]:
    """OciTarImage::image_manifest without an architecture (PVE passes none): the first entry of index.json that
    is an image manifest. A nested image index is not followed, so an archive of one (`skopeo copy --all`) fails."""
    for descriptor in index.get("manifests") or []:
        if descriptor.get("mediaType") == OCI_MANIFEST:
            return dict(descriptor)
    raise LxcError("Error while parsing OCI image: Unsupported CPU architecture")


def _image_config(layout: Path, descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """parse_image: the manifest's image config (its `config` part; none is an empty one)."""
    manifest_file = _blob(layout, descriptor["digest"])
    if not manifest_file.is_file():
        raise LxcError("Error while parsing OCI image: OCI spec error: Image manifest with digest "
                       f"{descriptor['digest']} mentioned in image index is missing")
    config = json.loads(manifest_file.read_bytes()).get("config") or {}
    if config.get("mediaType") != OCI_CONFIG:
        raise LxcError("Error while parsing OCI image: Wrong media type")
    config_file = _blob(layout, config.get("digest", ""))
    if not config_file.is_file():
        raise LxcError("Error while parsing OCI image: Missing image config")
    inner: dict[str, Any] = json.loads(config_file.read_bytes()).get("config") or {}
    return inner


def _run(argv: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode:
        said = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise LxcError(f"unable to unpack the OCI archive: {what} exited with {proc.returncode}: {said}")


def unpack_image(archive: Path, rootfs: Path) -> dict[str, Any]:
    """parse_and_extract_image(archive, rootfs, no arch): the image config, the rootfs made from the first manifest's
    layers in order. The bed extracts the archive to a temporary layout beside rootfs, names the chosen manifest
    in its index.json (umoci unpacks a tagged image only) and lets `umoci unpack` apply the layers; rootfs must not
    exist. umoci also checks every blob's digest, which PVE does not."""
    with tempfile.TemporaryDirectory(prefix=".oci-", dir=rootfs.parent) as tmp:
        layout, bundle = Path(tmp) / "layout", Path(tmp) / "bundle"
        layout.mkdir()
        _run(["tar", "-xf", str(archive), "-C", str(layout)], "tar")
        index_file = layout / "index.json"
        if not index_file.is_file():
            raise LxcError("Error while parsing OCI image: OCI spec error: Missing index.json file")
        descriptor = first_manifest(json.loads(index_file.read_bytes()))
        config = _image_config(layout, descriptor)
        chosen = {**descriptor, "annotations": {**(descriptor.get("annotations") or {}), REF_NAME: "pve-first"}}
        index_file.write_text(json.dumps({"schemaVersion": 2, "manifests": [chosen]}))
        _run(["umoci", "unpack", "--image", f"{layout}:pve-first", str(bundle)], "umoci unpack")
        (bundle / "rootfs").rename(rootfs)
    return config


# ------------------------------------------------------- image config -> options


def _in_chroot(rootfs: Path, code: str, *args: str) -> Any:
    """Run Python `code` chrooted to rootfs (as PVE chroots before it touches a CT's files, so that symlinks cannot
    lead out of it); what it prints is JSON."""
    prelude = "import json, os, sys\nos.chroot(sys.argv[1])\nos.chdir('/')\n"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code, str(rootfs), *args],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode:
        raise LxcError((proc.stderr.strip().splitlines() or ["chroot helper failed"])[-1])
    return json.loads(proc.stdout)


_MAKE_PATHS = "for p in sys.argv[2:]:\n    os.makedirs('/' + p, exist_ok=True)\nprint('null')\n"
# Cwd::abs_path as PVE calls it in the chroot: the last component may be missing, the ones before may not.
_ABS_PATHS = ("out = []\nfor p in sys.argv[2:]:\n    r = os.path.realpath(p)\n"
              "    out.append(r if os.path.isdir(os.path.dirname(r)) else None)\nprint(json.dumps(out))\n")


def _lookup(file: Path, match_index: int, value: str, ret_index: int) -> str | None:
    """resolve_oci_user's $lookup_field: the field ret_index of the first line whose field match_index is value."""
    try:
        text = file.read_text(errors="surrogateescape")
    except OSError:
        return None
    for line in text.split("\n"):
        fields = _perl_split(line, ":")
        if len(fields) > match_index and fields[match_index] == value:
            return fields[ret_index] if len(fields) > ret_index else None
    return None


def _supplementary_groups(group_file: Path, username: str) -> str | None:
    """resolve_oci_user's $get_supplementary_groups: the gids of the groups that list username, comma-joined."""
    try:
        text = group_file.read_text(errors="surrogateescape")
    except OSError:
        return None
    gids = []
    for line in text.split("\n"):
        fields = _perl_split(line, ":")
        if len(fields) < 4:
            continue
        if username in _perl_split(fields[3], ","):
            gids.append(fields[2])
    return ",".join(gids)


def resolve_oci_user(user_text: str, rootfs: Path) -> tuple[str | None, str | None, str | None]:
    """resolve_oci_user: (uid, gid, supplementary gids) of `user[:group]` from the rootfs's passwd and group files;
    a name they lack gives no id (and then no lxc.init key), as on PVE."""
    found = re.fullmatch(r"([^:]+)(?::([^:]+))?", user_text)
    if not found:
        raise LxcError("OCI config value for 'User' has an invalid format")
    user, group = found.group(1), found.group(2)
    resolved = _in_chroot(rootfs, _ABS_PATHS, "/etc/passwd", "/etc/group")
    for path, name in zip(resolved, ("passwd", "group"), strict=True):
        if path is None:
            raise LxcError(f"cannot resolve /etc/{name} path in container rootfs")
    passwd, groups_file = rootfs / resolved[0].lstrip("/"), rootfs / resolved[1].lstrip("/")
    if re.fullmatch(r"\d+", user):
        uid: str | None = user
        username = _lookup(passwd, 2, user, 0)
    else:
        username, uid = user, _lookup(passwd, 0, user, 2)
    gid = groups = None
    if group is not None:
        gid = group if re.fullmatch(r"\d+", group) else _lookup(groups_file, 0, group, 2)
    else:
        gid = _lookup(passwd, 2, uid, 3) if uid is not None else None
        groups = _supplementary_groups(groups_file, username) if username is not None else None
    return uid, gid, groups


def _checked_scalar(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if PVE_CTRL.search(str(value)):
        raise LxcError(f"OCI config value for '{key}' contains forbidden control characters!")
    return str(value)


def _checked_array(config: Mapping[str, Any], key: str) -> list[str] | None:
    values = config.get(key)
    if values is None:
        return None
    if any(PVE_CTRL.search(str(v)) for v in values):
        raise LxcError(f"OCI config array-value for '{key}' contains forbidden control characters!")
    return [str(v) for v in values]


def _make_volume_dirs(config: Mapping[str, Any], rootfs: Path, log: list[str]) -> None:
    """Volumes: only the directories are made, chrooted (PVE makes no mount point). Perl's hash order is random;
    the bed's is sorted."""
    volumes = config.get("Volumes")
    if volumes is None:
        return
    if any(PVE_CTRL.search(path) for path in volumes):
        raise LxcError("OCI config data-volumes path contains forbidden control characters!")
    for path in sorted(volumes):
        log.append(f"creating base directory for volume at {path}")
    _in_chroot(rootfs, _MAKE_PATHS, *sorted(volumes))


def _host_managed(conf: dict[str, Any], log: list[str]) -> None:
    """A custom entrypoint likely lacks network management: every netN without host-managed gets it."""
    for key in sorted(k for k in conf if re.fullmatch(r"net\d+", k)):
        props = dict(part.partition("=")[::2] for part in str(conf[key]).split(",") if part)
        if "host-managed" not in props:
            log.append(f"Auto-Enabling host-managed network for network device {key}.")
            conf[key] = normalise(key, f"{conf[key]},host-managed=1")


def ct_config(conf: Mapping[str, Any], config: Mapping[str, Any], rootfs: Path) -> tuple[dict[str, Any], list[str]]:
    """restore_oci_archive after the extraction: the CT's config with the image config mapped onto it, and what PVE
    prints meanwhile. Entrypoint+Cmd -> entrypoint (and cmode console, host-managed NICs) unless it is /sbin/init;
    User -> lxc.init.uid/gid/groups; WorkingDir -> lxc.init.cwd; Env -> env; StopSignal -> lxc.signal.halt. The
    image's entrypoint and env replace what the create asked for; raw keys go in `lxc` as [key, value] pairs."""
    conf = dict(conf)
    log: list[str] = []
    raw: list[list[str]] = [list(pair) for pair in conf.get("lxc") or []]
    _make_volume_dirs(config, rootfs, log)
    init_cmd = (_checked_array(config, "Entrypoint") or []) + (_checked_array(config, "Cmd") or [])
    if init_cmd and init_cmd[0] != "/sbin/init":
        conf["entrypoint"] = cmd2string(init_cmd)
        conf["cmode"] = "console"
        _host_managed(conf, log)
    user = _checked_scalar(config, "User")
    if _perl_true(user):
        assert user is not None
        for key, value in zip(("lxc.init.uid", "lxc.init.gid", "lxc.init.groups"), resolve_oci_user(user, rootfs),
                              strict=True):
            if value is not None:
                raw.append([key, value])
    working_dir = _checked_scalar(config, "WorkingDir")
    if _perl_true(working_dir):
        raw.append(["lxc.init.cwd", str(working_dir)])
    env = _checked_array(config, "Env")
    if env is not None:
        conf["env"] = "\0".join(env)
    stop_signal = _checked_scalar(config, "StopSignal")
    raw.append(["lxc.signal.halt", "SIGTERM" if stop_signal is None else stop_signal])
    conf["lxc"] = raw
    return conf, log
