"""Real LXC behind the bed's containers: what a PVE node does with `lxc-*` when a CT is created, started,
stopped, shut down, suspended, resumed, migrated or destroyed.

Per node (`<bed root>/nodes/<node>/`):
- `ct/<vmid>/rootfs`       the container's root filesystem, unpacked from its template at create;
- `ct/<vmid>/console.log`  what the container's processes printed (stdout and stderr of `lxc-start -F`);
- `ct/<vmid>/lxc.log`      LXC's own log (`-l INFO`);
- `lxc/<vmid>/config`      the LXC config, written from the CT's PVE config at every start;
- `bin/pct`, `bin/pvesh`   the node's tools (tests/testbed/nodetools.py), first on PATH in its SSH sessions;
- `etc-lxc/lxc.conf`       bound at /etc/lxc in the node's SSH sessions: `lxc-info -n <vmid>`, `lxc-freeze -n
                           <vmid>` there act on that node's containers, as on a PVE node.

Where the bed differs from PVE, on purpose:
- Containers run **privileged** (no id mapping) even with `unprivileged=1`, and the rootfs is unpacked with
  the template's numeric owners as they are (PVE shifts them by 100000). That is enough to prove process,
  environment, working directory, user and limits; it proves nothing about user namespaces.
- Mount points (mpN) are bind mounts: a node path as it is, a storage volume as a directory of the node's
  `volumes/`. `pct mount` does not mount them (the rootfs is a plain directory), and `lxc-usernsexec` on the
  node's PATH drops its id maps (the owners are never shifted here).
- **No network**: `lxc.net.0.type = empty` (a loopback device only), whatever the netN options say.
- Limits: only `memory` (the cgroup memory controller, where the host has a usable one); no swap, cores,
  cpulimit or cpuunits.
- `env` becomes lxc.environment.runtime where LXC is 6 or newer, as PVE 9.1 writes it; with older LXC (Debian
  12's 5.0) it becomes lxc.environment, which `pct exec` sessions get too.
- The CT's raw `lxc` keys (root's, or what an OCI image's config became: lxc.init.uid/gid/groups, lxc.init.cwd,
  lxc.signal.halt) are written last, as PVE writes them.
- `entrypoint` is lxc.init.cmd as it is. PVE 9's LXC 6 splits it honouring '...' and "..." quotes, which the
  entrypoint PVE makes from an OCI image has for every word with a space or an `=` (String::ShellQuote); LXC 5
  splits on spaces only, so the bed refuses an entrypoint with quotes at start.
- No tmpfs on /dev/shm for an entrypoint other than /sbin/init (PVE::LXC::update_lxc_config mounts one).
- Start and stop go straight to lxc-start/lxc-stop: no pve-container@ systemd unit, no hooks (mount, start,
  stop), no lxcfs, no AppArmor profile of PVE's.
- **suspend** freezes the container (lxc-freeze) and it stays `running`, as PVE reports a frozen container;
  **resume** thaws it. PVE 9 itself uses `lxc-checkpoint` (CRIU), after which the CT is stopped.
- An entrypoint that ends within START_SETTLE seconds of reaching RUNNING fails the start task (PVE's
  outcome there depends on timing); one that ends later is simply reported `stopped` afterwards.
- Only containers made by a `vzcreate` task while the bed's LXC mode is on run for real; containers added
  with fakepve's `add_ct`, clones and HA-managed ones keep fakepve's make-believe state.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import functools
import gzip
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOLS = ("lxc-start", "lxc-info", "lxc-attach", "lxc-stop", "lxc-freeze", "lxc-unfreeze")
START_TIMEOUT = 10.0     # seconds for lxc-info to report RUNNING after lxc-start
START_SETTLE = 0.25      # an entrypoint ending this soon after RUNNING failed to start
POLL = 0.05
STATE_CACHE = 0.2        # seconds a status read may reuse lxc-info's answer
STOP_WAIT = 10.0         # seconds for lxc-start to end after the container stopped
LOG_TAIL = 10
RUNNING_STATES = ("RUNNING", "FROZEN", "FREEZING", "THAWED", "STOPPING")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ENV_ENTRY = re.compile(r"^\w+=")


class LxcError(Exception):
    """A container action failed: the task's error, plus lines for the task log."""

    def __init__(self, message: str, log: list[str] | None = None) -> None:
        super().__init__(message)
        self.log = log or []


# ------------------------------------------------------------------ the host


@dataclass(frozen=True)
class HostFeatures:
    apparmor: bool
    memory: str | None     # "v1", "v2" or None: which cgroup memory controller LXC can use here
    # PVE 9.1 writes `env` as lxc.environment.runtime (LXC 6+: the init process only); older LXC has only
    # lxc.environment, which lxc-attach sessions (pct exec) get as well.
    env_key: str = "lxc.environment"


@functools.lru_cache(maxsize=1)
def host_features() -> HostFeatures:
    """What this host offers, detected once."""
    apparmor = Path("/sys/module/apparmor/parameters/enabled")
    try:
        enabled = apparmor.read_text().strip().upper().startswith("Y")
    except OSError:
        enabled = False
    memory: str | None = None
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        memory = "v1"
    else:
        controllers = Path("/sys/fs/cgroup/cgroup.controllers")
        with contextlib.suppress(OSError):
            if "memory" in controllers.read_text().split():
                memory = "v2"
    env_key = "lxc.environment"
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        version = subprocess.run(["lxc-start", "--version"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout.strip()
        if int(version.split(".")[0]) >= 6:
            env_key = "lxc.environment.runtime"
    return HostFeatures(apparmor=enabled, memory=memory, env_key=env_key)


# ------------------------------------------------------------- LXC config


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "yes", "on", "true")


def _plain(what: str, value: str) -> str:
    # A line break would start a new LXC config key.
    if _CONTROL.search(value):
        raise LxcError(f"{what} contains a control character: {value!r}")
    return value


def mount_entries(conf: Mapping[str, Any], volumes: Path) -> list[str]:
    """Its mount points (mpN) as LXC bind mounts: a path on the node as it is, a storage volume as a directory
    of the node's `volumes/` (made on first use), read-only with ro=1; in the order of their numbers."""
    lines = []
    for key in sorted((k for k in conf if re.fullmatch(r"mp\d+", k)), key=lambda k: int(k[2:])):
        parts = str(conf[key]).split(",")
        options = dict(p.partition("=")[::2] for p in parts[1:])
        source, target = parts[0].partition("volume=")[2] or parts[0], options.get("mp", "")
        if not target.startswith("/") or ".." in target.split("/"):
            raise LxcError(f"{key}: mount point path {target!r} is not usable")
        if not source.startswith("/"):
            source_dir = volumes / re.sub(r"[^\w.-]", "_", source)
            source_dir.mkdir(parents=True, exist_ok=True)
            source = str(source_dir)
        flags = "bind,create=dir" + (",ro" if _flag(options.get("ro", "0")) else "")
        lines.append(f"lxc.mount.entry = {_plain(key, source)} {_plain(key, target.lstrip('/'))} none {flags} 0 0")
    return lines


def lxc_config(vmid: int, conf: Mapping[str, Any], rootfs: Path, host: HostFeatures | None = None,
               volumes: Path | None = None) -> str:
    """The LXC config of a container, from its PVE config (raises LxcError for what LXC cannot take); its
    storage volumes' directories in `volumes`."""
    host = host or host_features()
    hostname = _plain("hostname", str(conf.get("hostname") or f"CT{vmid}"))
    entrypoint = _plain("entrypoint", str(conf.get("entrypoint") or "/sbin/init"))
    if any(quote in entrypoint for quote in "\"'"):
        raise LxcError(f"entrypoint {entrypoint!r} has quotes: LXC splits lxc.init.cmd on spaces without "
                       "quoting, so use a wrapper script")
    rootfs_options = str(conf.get("rootfs") or "").split(",")[1:]
    read_only = any(o.partition("=")[0] == "ro" and _flag(o.partition("=")[2]) for o in rootfs_options)
    lines = [
        f"# Written by the pveoci test bed from CT {vmid}'s PVE config when it started (tests/testbed/lxc.py).",
        f"lxc.uts.name = {hostname}",
        f"lxc.rootfs.path = dir:{rootfs}",
    ]
    if read_only:
        lines.append("lxc.rootfs.options = ro")
    lines.append(f"lxc.init.cmd = {entrypoint}")
    for entry in str(conf.get("env") or "").split("\0"):
        if not entry:
            continue
        # Without '=' LXC would copy the variable from the host (the test run's own environment).
        if not _ENV_ENTRY.match(entry):
            raise LxcError(f"env entry {entry!r} is not KEY=VALUE")
        lines.append(f"{host.env_key} = {_plain('env entry', entry)}")
    lines += [
        "# No network in the test bed: a loopback device only, whatever the CT's netN options say.",
        "lxc.net.0.type = empty",
        "lxc.console.path = none",
        "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed",
        "lxc.autodev = 1",
        # A devpts of its own with /dev/ptmx, as every PVE container has (LXC's common.conf, which PVE's
        # configs include): `pct enter` and a process's own pty need it.
        "lxc.pty.max = 1024",
    ]
    lines += mount_entries(conf, volumes or rootfs.parent / "volumes")
    if host.apparmor:
        lines.append("lxc.apparmor.profile = unconfined")
    memory = conf.get("memory")
    # The memory limit where the host has a usable cgroup memory controller; skipped elsewhere.
    if memory and host.memory == "v1":
        lines.append(f"lxc.cgroup.memory.limit_in_bytes = {int(memory) * 1024 * 1024}")
    elif memory and host.memory == "v2":
        lines.append(f"lxc.cgroup2.memory.max = {int(memory) * 1024 * 1024}")
    return "\n".join(lines + raw_entries(conf)) + "\n"


def raw_entries(conf: Mapping[str, Any]) -> list[str]:
    """The CT's raw `lxc` keys ([key, value] pairs: root's own, or an OCI image's lxc.init.*, lxc.signal.halt),
    last, as PVE writes them after everything it derives."""
    lines = []
    for key, value in conf.get("lxc") or []:
        if not re.fullmatch(r"lxc(\.[\w-]+)+", str(key)):
            raise LxcError(f"raw LXC key {key!r} is not usable")
        lines.append(f"{key} = {_plain(str(key), str(value))}")
    return lines


# ---------------------------------------------------------------- templates


@contextlib.contextmanager
def _decompressed(template: Path) -> Iterator[Any]:
    name = template.name
    with template.open("rb") as raw:
        if name.endswith(".zst"):
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as reader:
                yield reader
        elif name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw) as reader:
                yield reader
        elif name.endswith(".xz"):
            with lzma.LZMAFile(raw) as reader:
                yield reader
        elif name.endswith(".bz2"):
            with bz2.BZ2File(raw) as reader:
                yield reader
        else:
            yield raw


# PVE's own (PVE::Storage::Plugin @COMMON_TAR_FLAGS): owners as numbers, file capabilities and user xattrs kept.
TAR_FLAGS = ("-p", "--sparse", "--numeric-owner", "--acls", "--xattrs", "--xattrs-include=user.*",
             "--xattrs-include=security.capability", "--warning=no-file-ignored", "--warning=no-xattr-write")


def unpack(template: Path, rootfs: Path) -> None:
    """Unpack a template into rootfs (which must not exist) with tar, owners and modes as stored."""
    rootfs.mkdir(parents=True)
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(["tar", "-xf", "-", *TAR_FLAGS, "-C", str(rootfs)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert tar.stdin is not None
        problem: Exception | None = None
        try:
            with _decompressed(template) as data:
                shutil.copyfileobj(data, tar.stdin, 1 << 20)
        except BrokenPipeError:
            pass  # tar ended early: its own message says why
        except Exception as exc:  # zstd, gzip, lzma or read errors
            problem = exc
        finally:
            with contextlib.suppress(BrokenPipeError):
                tar.stdin.close()
            code = tar.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
    if problem is not None:
        raise LxcError(f"unable to unpack {template.name}: {problem}")
    if code != 0:
        raise LxcError(f"unable to unpack {template.name}: tar exited with {code}: " + " / ".join(said[-3:]))


# ------------------------------------------------------------ pct, pvesh


USERNSEXEC = """#!/bin/sh
# lxc-usernsexec on a test bed node: its containers run privileged with the template's owners unshifted, so the
# id maps (-m) are dropped and the command after -- runs as it is (tests/testbed/lxc.py).
while [ $# -gt 0 ]; do
  case $1 in -m) shift 2 ;; --) shift; break ;; *) echo "lxc-usernsexec (bed): unexpected $1" >&2; exit 2 ;; esac
done
exec "$@"
"""

LAUNCHER = """#!/bin/sh
# {tool} on the test bed's node {node_text}: tests/testbed/nodetools.py, backed by the bed's API and LXC.
exec {python} -I -S {tools} {config} {tool} "$@"
"""


# ------------------------------------------------------------- containers


def _tail(path: Path, offset: int, count: int = LOG_TAIL) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-count:]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _parse_info(text: str) -> tuple[str, int | None]:
    state, pid = "STOPPED", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "State":
            state = value.strip()
        elif key.strip() == "PID" and value.strip().isdigit():
            pid = int(value.strip())
    return state, pid


class LxcHost:
    """The bed's LXC containers, on every node: run on the fakepve server's event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._procs: dict[tuple[str, int], asyncio.subprocess.Process] = {}
        self._states: dict[tuple[str, int], tuple[float, str, int | None]] = {}
        self._unpacking: set[asyncio.Future[Any]] = set()

    # ---------------------------------------------------------------- paths

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def lxcpath(self, node: str) -> Path:
        return self.node_dir(node) / "lxc"

    def ct_root(self, node: str) -> Path:
        return self.node_dir(node) / "ct"

    def ct_dir(self, node: str, vmid: int) -> Path:
        return self.ct_root(node) / str(vmid)

    def rootfs(self, node: str, vmid: int) -> Path:
        return self.ct_dir(node, vmid) / "rootfs"

    def console_log(self, node: str, vmid: int) -> Path:
        return self.ct_dir(node, vmid) / "console.log"

    def lxc_log(self, node: str, vmid: int) -> Path:
        return self.ct_dir(node, vmid) / "lxc.log"

    def bin_dir(self, node: str) -> Path:
        return self.node_dir(node) / "bin"

    def write_etc(self, node: str) -> Path:
        """The node's /etc/lxc (bound there in its SSH sessions): lxc.conf makes its LXC path the default."""
        folder = self.node_dir(node) / "etc-lxc"
        folder.mkdir(parents=True, exist_ok=True)
        default = Path("/etc/lxc/default.conf")
        if default.is_file():
            shutil.copyfile(default, folder / "default.conf")
        (folder / "lxc.conf").write_text(f"lxc.lxcpath = {self.lxcpath(node)}\n")
        return folder

    def write_tools(self, node: str, api: str, cafile: Path, credentials: Path,
                    addresses: Mapping[str, str]) -> Path:
        """The node's `pct` and `pvesh` (tests/testbed/nodetools.py) in bin/; returns bin/, to put first on PATH.

        `credentials`: a 0600 JSON file with root@pam's password and a ticket for the API at `api`."""
        folder = self.bin_dir(node)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.node_dir(node) / "tools.json"
        config.write_text(json.dumps({
            "node": node, "api": api, "cafile": str(cafile), "credentials": str(credentials),
            "addresses": dict(addresses), "lxcpath": str(self.lxcpath(node)), "ctroot": str(self.ct_root(node)),
            "lxc_info": shutil.which("lxc-info") or "lxc-info", "log": str(self.tools_log(node)),
            "lxc_attach": shutil.which("lxc-attach") or "lxc-attach",
        }, indent=1))
        q = shlex.quote
        # Containers run unmapped here (see above): lxc-usernsexec, with which a node unpacks into an unprivileged
        # container as Proxmox does, runs the command as it is.
        usernsexec = folder / "lxc-usernsexec"
        usernsexec.write_text(USERNSEXEC)
        usernsexec.chmod(0o755)
        for tool in ("pct", "pvesh"):
            script = folder / tool
            script.write_text(LAUNCHER.format(tool=tool, node_text=re.sub(r"[^\w.-]", "?", node),
                                              python=q(sys.executable), config=q(str(config)),
                                              tools=q(str(Path(__file__).with_name("nodetools.py")))))
            script.chmod(0o755)
        return folder

    def tools_log(self, node: str) -> Path:
        """Every pct and pvesh call on the node: one JSON line each, {"tool": ..., "argv": [...]}."""
        return self.node_dir(node) / "tools.log"

    def tool_calls(self, node: str) -> list[dict[str, Any]]:
        path = self.tools_log(node)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # ---------------------------------------------------------------- state

    def _lxc(self, tool: str, node: str, vmid: int, *args: str) -> list[str]:
        return [tool, "-n", str(vmid), "-P", str(self.lxcpath(node)), *args]

    def _exited(self, node: str, vmid: int) -> bool:
        proc = self._procs.get((node, vmid))
        return proc is not None and proc.returncode is not None

    def state(self, node: str, vmid: int, fresh: bool = False) -> tuple[str, int | None]:
        """(LXC state, host pid of its init); a synchronous lxc-info call, reused for STATE_CACHE s unless fresh."""
        key = (node, vmid)
        if fresh:
            self._states.pop(key, None)
        if self._exited(node, vmid) or not (self.lxcpath(node) / str(vmid) / "config").exists():
            return "STOPPED", None
        cached = self._states.get(key)
        if cached is not None and time.monotonic() - cached[0] < STATE_CACHE:
            return cached[1], cached[2]
        try:
            proc = subprocess.run(self._lxc("lxc-info", node, vmid, "-s", "-p", "-H"), capture_output=True,
                                  text=True, timeout=5, check=False)
            state, pid = _parse_info(proc.stdout) if proc.returncode == 0 else ("STOPPED", None)
        except subprocess.TimeoutExpired:
            state, pid = "UNKNOWN", None
        self._states[key] = (time.monotonic(), state, pid)
        return state, pid

    async def state_now(self, node: str, vmid: int) -> tuple[str, int | None]:
        self._states.pop((node, vmid), None)
        if self._exited(node, vmid):
            return "STOPPED", None
        code, out, _ = await self._run(self._lxc("lxc-info", node, vmid, "-s", "-p", "-H"))
        return _parse_info(out) if code == 0 else ("STOPPED", None)

    @staticmethod
    async def _run(cmd: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "", f"{cmd[0]} did not finish in {timeout:g} s"
        except BaseException:  # cancelled (the bed is being reset): no lxc-stop -t may linger
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    # -------------------------------------------------------------- actions

    async def create(self, node: str, vmid: int, template: Path,
                     fill: Callable[[Path, Path], Any] = unpack) -> Any:
        """Make the container's rootfs from the template with fill(template, rootfs) (tar by default; rootfs must
        not exist yet), in a thread; its result. On failure nothing is left."""
        folder = self.ct_dir(node, vmid)
        await self.remove(node, vmid)
        folder.mkdir(parents=True)
        future = asyncio.get_running_loop().run_in_executor(None, fill, template, self.rootfs(node, vmid))
        self._unpacking.add(future)
        try:
            return await asyncio.shield(future)
        except BaseException:
            with contextlib.suppress(BaseException):
                await future  # never remove what tar is still writing to
            await self.remove(node, vmid)
            raise
        finally:
            self._unpacking.discard(future)

    async def start(self, node: str, vmid: int, conf: Mapping[str, Any]) -> int:
        """Write the LXC config, run lxc-start -F in the background; the host pid of the container's init."""
        rootfs = self.rootfs(node, vmid)
        if not rootfs.is_dir():
            raise LxcError(f"the test bed has no rootfs for CT {vmid} on {node} ({rootfs})")
        config = lxc_config(vmid, conf, rootfs, volumes=self.node_dir(node) / "volumes")
        if (await self.state_now(node, vmid))[0] != "STOPPED":
            raise LxcError(f"CT {vmid} already running")
        (self.lxcpath(node) / str(vmid)).mkdir(parents=True, exist_ok=True)
        (self.lxcpath(node) / str(vmid) / "config").write_text(config)
        console, lxc_log = self.console_log(node, vmid), self.lxc_log(node, vmid)
        offsets = _size(console), _size(lxc_log)
        with console.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *self._lxc("lxc-start", node, vmid, "-F", "-o", str(lxc_log), "-l", "INFO"),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[(node, vmid)] = proc
        self._states.pop((node, vmid), None)

        def failed(why: str) -> LxcError:
            log = [f"{why}; the end of its LXC log ({lxc_log.name}) and console ({console.name}):"]
            log += ["lxc.log: " + line for line in _tail(lxc_log, offsets[1])]
            log += ["console: " + line for line in _tail(console, offsets[0])]
            return LxcError(f"startup for container '{vmid}' failed", log)

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.returncode is not None:
                raise failed("the container ended as it started")
            state, pid = await self.state_now(node, vmid)
            if state in RUNNING_STATES and pid:
                break
            if time.monotonic() > deadline:
                await self.stop(node, vmid)
                raise failed(f"lxc-info did not report RUNNING within {START_TIMEOUT:g} s")
            await asyncio.sleep(POLL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), START_SETTLE)
            raise failed(f"the entrypoint ended within {START_SETTLE:g} s of starting")
        return pid

    async def _ended(self, node: str, vmid: int, timeout: float = STOP_WAIT) -> bool:
        """Wait until the container is stopped (and its lxc-start gone); False if it is still up."""
        proc = self._procs.get((node, vmid))
        deadline = time.monotonic() + timeout
        if proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout)
        while (await self.state_now(node, vmid))[0] != "STOPPED":
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    async def stop(self, node: str, vmid: int) -> None:
        """lxc-stop -k: kill it now."""
        if (await self.state_now(node, vmid))[0] == "STOPPED":
            return
        code, out, err = await self._run(self._lxc("lxc-stop", node, vmid, "-k"))
        if not await self._ended(node, vmid):
            raise LxcError(f"unable to stop CT {vmid}: lxc-stop exited with {code}: {(err or out).strip()}")

    async def shutdown(self, node: str, vmid: int, timeout: int, force: bool) -> None:
        """lxc-stop -t timeout (--nokill unless force): a clean shutdown, PVE's `container did not stop`."""
        if (await self.state_now(node, vmid))[0] == "STOPPED":
            return
        cmd = self._lxc("lxc-stop", node, vmid, "-t", str(timeout))
        if not force:
            cmd.append("--nokill")
        code, _out, _err = await self._run(cmd, timeout + 30.0)
        if (code == 0 and await self._ended(node, vmid)) or (await self.state_now(node, vmid))[0] == "STOPPED":
            await self._ended(node, vmid)
            return
        if not force:
            raise LxcError("container did not stop")
        await self.stop(node, vmid)

    async def freeze(self, node: str, vmid: int) -> None:
        code, out, err = await self._run(self._lxc("lxc-freeze", node, vmid))
        self._states.pop((node, vmid), None)
        if code != 0:
            raise LxcError(f"unable to freeze CT {vmid}: {(err or out).strip()}")

    async def thaw(self, node: str, vmid: int) -> None:
        code, out, err = await self._run(self._lxc("lxc-unfreeze", node, vmid))
        self._states.pop((node, vmid), None)
        if code != 0:
            raise LxcError(f"unable to resume CT {vmid}: {(err or out).strip()}")

    async def remove(self, node: str, vmid: int) -> None:
        """Stop the container if it runs and remove its files (rootfs, logs, LXC config)."""
        await self.stop(node, vmid)
        self._procs.pop((node, vmid), None)
        self._states.pop((node, vmid), None)
        for folder in (self.ct_dir(node, vmid), self.lxcpath(node) / str(vmid)):
            shutil.rmtree(folder, ignore_errors=True)

    async def move(self, node: str, target: str, vmid: int) -> None:
        """Move a stopped container's files to another node (a migration)."""
        await self.stop(node, vmid)
        self._procs.pop((node, vmid), None)
        destination = self.ct_dir(target, vmid)
        shutil.rmtree(destination, ignore_errors=True)
        destination.parent.mkdir(parents=True, exist_ok=True)
        self.ct_dir(node, vmid).rename(destination)
        shutil.rmtree(self.lxcpath(node) / str(vmid), ignore_errors=True)

    # -------------------------------------------------------------- cleanup

    def _known(self) -> set[tuple[str, int]]:
        """Every container that has files on any node, or was started by this host."""
        found = set(self._procs)
        for base in ("ct", "lxc"):
            for folder in (self.root / "nodes").glob(f"*/{base}/*"):
                if folder.name.isdigit():
                    found.add((folder.parent.parent.name, int(folder.name)))
        return found

    async def cleanup(self) -> None:
        """Stop (lxc-stop -k) every container and remove all their files."""
        if self._unpacking:
            await asyncio.wait(set(self._unpacking))
        for node, vmid in sorted(self._known()):
            try:
                await self.remove(node, vmid)
            except LxcError:
                self._kill_init(node, vmid)
                await self.remove(node, vmid)
        self._procs.clear()
        self._states.clear()

    def cleanup_sync(self) -> None:
        """cleanup() without the event loop (when it is gone): best effort."""
        for node, vmid in sorted(self._known()):
            if (self.lxcpath(node) / str(vmid) / "config").exists():
                subprocess.run(self._lxc("lxc-stop", node, vmid, "-k"), capture_output=True, timeout=30,
                               check=False)
                self._kill_init(node, vmid)
            for folder in (self.ct_dir(node, vmid), self.lxcpath(node) / str(vmid)):
                shutil.rmtree(folder, ignore_errors=True)
        self._procs.clear()
        self._states.clear()

    def _kill_init(self, node: str, vmid: int) -> None:
        _state, pid = self.state(node, vmid, fresh=True)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
