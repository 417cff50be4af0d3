"""`pct` and `pvesh` on a test bed node: Proxmox VE's own command-line tools as they print and exit, backed by
the node's API (the bed's fakepve, as root@pam) and the node's real LXC containers.

Standalone (the standard library only, run with `python -I -S`): each node's sshd puts launchers for it
first on PATH (tests/testbed/lxc.py writes them). Modelled on pve-common (CLIHandler, RESTEnvironment's
synchronous CLI workers, Exception), pve-manager (PVE/CLI/pvesh.pm) and pve-container (PVE/CLI/pct.pm):

- pvesh get PATH [--key=value...] --output-format json: the data as one line of canonical JSON, exit 0.
- pvesh create|set|delete that starts a task: the task runs before the answer; its log on stdout, then the
  UPID as JSON; a failed task prints its error on stderr and still exits 0 (bug 4333). A task on another
  node's path comes back through pvesh's proxy: the log lines, joined, with the quoted UPID, as one JSON
  string.
- pct create|start|stop|shutdown|destroy|migrate|suspend|resume|reboot: the task's log on stdout; a failed
  task prints its error (one line) on stderr and exits 255; "Task finished with N warning(s)!" on stderr.
- pct set: nothing printed; pct status: `status: <status>`; pct config: `key: value` lines, description
  encoded as PVE encodes it; pct list: the fixed-width table; pct exec: lxc-attach in this node's container;
  pct mount/unmount: as PVE's, the bed's rootfs being a plain directory.
- Every failure before a task: exit 255, the message on stderr: a plain `die` (the API's 500) as it is,
  others as `<code> <message>`, a parameter error with `<param>: <error>` lines and the usage line.
- A path on a node the API calls offline: pvesh's `proxy handler failed: ssh: connect to host ...`.
- /cluster/status says `local: 1` for this node, as pvesh on it does.
Every call appends its argv (JSON) to the node's tools.log, so tests see what arrived, word for word.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TASK_WAIT = 3600.0
# Boolean options (Getopt ":s"): a bare `--purge` means 1.
BOOLEANS = {"start", "purge", "force", "restart", "forceStop", "destroy-unreferenced-disks", "unprivileged",
            "console", "onboot", "protection", "template", "debug", "keep-env", "verbose", "quiet", "online",
            "skiplock", "overrule-shutdown", "ignore-unpack-errors", "restore", "unique", "noproxy", "nooutput"}
TASK_COMMANDS = {"create", "start", "stop", "shutdown", "destroy", "migrate", "suspend", "resume", "reboot"}
USAGE = {"create": "pct create <vmid> <ostemplate> [OPTIONS]", "set": "pct set <vmid> [OPTIONS]",
         "migrate": "pct migrate <vmid> <target> [OPTIONS]"}


class Die(Exception):
    """A Perl `die`: the text goes to stderr, the program exits 255."""


class ApiFailure(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or {}


# ------------------------------------------------------------------- the API


class Api:
    """The node's view of the cluster API, as root@pam: a ticket from the bed, a new login when it expired."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.context = ssl.create_default_context(cafile=cfg["cafile"])
        with open(cfg["credentials"]) as fh:
            self.auth = json.load(fh)

    def _login(self) -> None:
        body = urllib.parse.urlencode({"username": self.auth["user"], "password": self.auth["password"]})
        data = self._send("POST", "/access/ticket", body.encode(), {})["data"]
        self.auth.update(ticket=data["ticket"], csrf=data["CSRFPreventionToken"])
        partial = f"{self.cfg['credentials']}.{os.getpid()}"
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            json.dump(self.auth, fh)
        os.replace(partial, self.cfg["credentials"])

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        # The bed's own https:// address.
        request = urllib.request.Request(self.cfg["api"] + path, data=body, method=method,  # noqa: S310
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=600) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                found = json.loads(exc.read())
            except ValueError:
                found = {}
            message = str(found.get("message") or exc.reason).rstrip("\n")
            raise ApiFailure(exc.code, message, found.get("errors")) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise Die(f"ipcc_send_rec[1] failed: {exc}\n") from None

    def call(self, method: str, segments: list[str], params: dict[str, str]) -> Any:
        path = "/" + "/".join(urllib.parse.quote(s, safe=":@!") for s in segments)
        query = urllib.parse.urlencode(params)
        body = None
        if method in ("GET", "DELETE"):
            path += f"?{query}" if query else ""
        else:
            body = query.encode()
        for attempt in (1, 2):
            headers = {"Cookie": f"PVEAuthCookie={self.auth['ticket']}",
                       "CSRFPreventionToken": self.auth["csrf"]}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            try:
                return self._send(method, path, body, headers)["data"]
            except ApiFailure as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._login()
        raise AssertionError("unreachable")

    def wait(self, upid: str) -> tuple[str, list[str]]:
        """(exit status, log lines) once the task stopped."""
        node = upid.split(":")[1]
        delay, deadline = 0.02, time.monotonic() + TASK_WAIT
        while True:
            status = self.call("GET", ["nodes", node, "tasks", upid, "status"], {})
            if status.get("status") == "stopped":
                break
            if time.monotonic() > deadline:
                raise Die(f"timeout waiting on task {upid}\n")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        lines = [str(item.get("t", "")) for item in self.call("GET", ["nodes", node, "tasks", upid, "log"],
                                                              {"limit": "100000"})]
        exitstatus = str(status.get("exitstatus") or "unknown")
        if lines and lines[-1].startswith("TASK "):
            lines.pop()  # the worker's end, which the CLI does not print
        if lines and exitstatus != "OK" and lines[-1] == exitstatus:
            lines.pop()  # fakepve logs the error before TASK ERROR; PVE's worker does not
        return exitstatus, lines


# --------------------------------------------------------------- arguments


def parse(args: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """Getopt::Long as PVE configures it: (positional words, options, words after `--`)."""
    words: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            return words, opts, args[i:]
        match = re.match(r"^--?([A-Za-z][\w-]*)(?:=(.*))?$", word, re.S)
        if match is None:
            words.append(word)
            continue
        key, value = match.group(1), match.group(2)
        if value is None:
            if key in BOOLEANS and (i >= len(args) or args[i].startswith("-")):
                value = "1"
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise Die(f"400 unable to parse option\nOption {key} requires an argument\n")
        opts[key] = value
    return words, opts, []


def failure_text(exc: ApiFailure, usage: str) -> str:
    """What the CLI prints for an error of the API's code: PVE::Exception's stringify, or a plain die."""
    if exc.status == 500:
        return exc.message + "\n"
    lines = "".join(f"{key}: {str(value).rstrip()}\n" for key, value in sorted(exc.errors.items()))
    text = f"{exc.status} {exc.message}\n{lines}"
    return text + (usage + "\n" if exc.status == 400 and exc.errors else "")


def offline(cfg: dict[str, Any], node: str) -> str:
    """pvesh's proxy to a node that does not answer (PVE::Cmd::run with errmsg: its last stderr line)."""
    address = cfg["addresses"].get(node, "192.0.2.1")
    return f"proxy handler failed: ssh: connect to host {address} port 22: No route to host\n"


def path_node(segments: list[str]) -> str | None:
    return segments[1] if len(segments) > 1 and segments[0] == "nodes" else None


def out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stderr.flush()


def is_upid(data: object) -> bool:
    return isinstance(data, str) and data.startswith("UPID:")


def task_end(exitstatus: str) -> bool:
    """What RESTEnvironment's tee_worker prints on stderr when a CLI worker ends; True if it ended well."""
    if exitstatus == "OK":
        return True
    warnings = re.match(r"^WARNINGS: (\d+)$", exitstatus)
    if warnings:
        err(f"Task finished with {warnings.group(1)} warning(s)!\n")
        return True
    err(" ".join(exitstatus.split("\n")) + "\n")
    return False


# ------------------------------------------------------------------- pvesh

VERBS = {"get": "GET", "create": "POST", "set": "PUT", "delete": "DELETE"}


def api_segments(raw: str) -> list[str]:
    """The path's segments; storage content takes the rest of the path as one volume id (fragmentDelimiter '')."""
    parts = [p for p in raw.split("/") if p]
    for i, part in enumerate(parts):
        if part == "content" and i >= 3 and parts[i - 2] == "storage" and len(parts) > i + 1:
            return [*parts[: i + 1], "/".join(parts[i + 1:])]
    return parts


def render(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    if fmt == "json-pretty":
        return json.dumps(data, sort_keys=True, indent=3, ensure_ascii=False) + "\n"
    # The text formats (tables) are not modelled: scalars as they are, the rest as JSON.
    return (str(data) if isinstance(data, (str, int, float)) else json.dumps(data, sort_keys=True)) + "\n"


def pvesh(cfg: dict[str, Any], api: Api, args: list[str]) -> int:
    while args[:1] in (["--noproxy"], ["--nooutput"]):
        args = args[1:]
    if len(args) < 2 or args[0] not in VERBS:
        raise Die(f"ERROR: unknown command 'pvesh {' '.join(args[:1])}'\n"
                  "USAGE: pvesh <COMMAND> [ARGS] [OPTIONS]\n")
    verb, raw = args[0], args[1]
    words, opts, extra = parse(args[2:])
    if words or extra:
        raise Die("400 too many arguments\n")
    fmt = opts.pop("output-format", "text")
    segments = api_segments(raw)
    node = path_node(segments)
    try:
        data = api.call(VERBS[verb], segments, opts)
    except ApiFailure as exc:
        if exc.status == 595 and node:
            raise Die(offline(cfg, node)) from None
        if exc.status == 501:
            raise Die(f"no '{verb}' handler for '{raw}'\n") from None
        raise Die(failure_text(exc, f"pvesh {verb} <api_path> [OPTIONS] [FORMAT_OPTIONS]")) from None
    if segments == ["cluster", "status"]:
        for item in data:
            if item.get("type") == "node":
                item["local"] = 1 if item.get("name") == cfg["node"] else 0
    if VERBS[verb] != "GET" and is_upid(data):
        exitstatus, lines = api.wait(data)
        if node is not None and node != cfg["node"]:
            if lines:  # the proxy read the remote pvesh's lines without their ends, and could not decode them
                data = "".join(lines) + json.dumps(data)
        elif lines:
            out("\n".join(lines) + "\n")
        task_end(exitstatus)
    out(render(data, fmt))
    return 0


# --------------------------------------------------------------------- pct

# command: (HTTP method, path after /nodes/<node>/lxc, positional parameters)
PCT = {
    "create": ("POST", [], ["vmid", "ostemplate"]),
    "set": ("PUT", ["{vmid}", "config"], ["vmid"]),
    "destroy": ("DELETE", ["{vmid}"], ["vmid"]),
    "migrate": ("POST", ["{vmid}", "migrate"], ["vmid", "target"]),
    **{action: ("POST", ["{vmid}", "status", action], ["vmid"])
       for action in ("start", "stop", "shutdown", "suspend", "resume", "reboot")},
}


def pct_request(cfg: dict[str, Any], command: str, rest: list[str]) -> tuple[str, list[str], dict[str, str], str]:
    method, tail, names = PCT[command]
    usage = USAGE.get(command, f"pct {command} <vmid> [OPTIONS]")
    words, opts, _extra = parse(rest)
    if len(words) < len(names):
        raise Die(f"400 not enough arguments\n{usage}\n")
    if len(words) > len(names):
        raise Die(f"400 too many arguments\n{usage}\n")
    given = dict(zip(names, words, strict=True))
    if not given["vmid"].isdigit():
        raise Die(f"400 Parameter verification failed.\nvmid: type check ('integer') failed - got "
                  f"'{given['vmid']}'\n{usage}\n")
    segments = ["nodes", cfg["node"], "lxc", *(part.format(**given) for part in tail)]
    params = {**opts, **{k: v for k, v in given.items() if not (k == "vmid" and tail)}}
    return method, segments, params, usage


def pct_show(cfg: dict[str, Any], api: Api, command: str, rest: list[str]) -> int:
    """pct status, config and list: what PVE/CLI/pct.pm prints for them."""
    words, opts, _ = parse(rest)
    if command == "list":
        rows = sorted(api.call("GET", ["nodes", cfg["node"], "lxc"], {}), key=lambda d: int(d["vmid"]))
        line = "{:<10} {:<10} {:<12} {:<20}\n"
        out(line.format("VMID", "Status", "Lock", "Name") + "".join(
            line.format(d["vmid"], d.get("status", ""), d.get("lock") or "", d.get("name", "")) for d in rows))
        return 0
    if len(words) != 1 or not words[0].isdigit():
        raise Die(f"400 not enough arguments\npct {command} <vmid>\n")
    base = ["nodes", cfg["node"], "lxc", words[0]]
    config = api.call("GET", [*base, "config"], {})
    if command == "config":
        for key in sorted(k for k in config if k not in ("digest", "lxc")):
            value = str(config[key])
            if key == "description":  # PVE::ParseUtils::encode_text
                value = urllib.parse.quote(value.encode(), safe="".join(
                    chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%:"))
            out(f"{key}: {value}\n")
        return 0
    status = api.call("GET", [*base, "status", "current"], {})
    if opts.get("verbose") in ("1", ""):
        out("".join(f"{k}: {v}\n" for k, v in sorted(status.items()) if v is not None and k != "cpu"))
    else:
        out(f"status: {status.get('status') or 'unknown'}\n")
    return 0


def pct(cfg: dict[str, Any], api: Api, args: list[str]) -> int:
    if not args:
        raise Die("ERROR: no command specified\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]\n")
    command, rest = args[0], args[1:]
    if command in ("status", "config", "list"):
        try:
            return pct_show(cfg, api, command, rest)
        except ApiFailure as exc:
            raise Die(failure_text(exc, f"pct {command} <vmid>")) from None
    if command not in PCT:
        raise Die(f"ERROR: unknown command 'pct {command}'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]\n")
    method, segments, params, usage = pct_request(cfg, command, rest)
    try:
        data = api.call(method, segments, params)
    except ApiFailure as exc:
        raise Die(failure_text(exc, usage)) from None
    if command in TASK_COMMANDS and is_upid(data):
        exitstatus, lines = api.wait(data)
        if lines:
            out("\n".join(lines) + "\n")
        return 0 if task_end(exitstatus) else 255
    return 0


def pct_exec(cfg: dict[str, Any], rest: list[str]) -> int:
    """`pct exec <vmid> [--keep-env 0|1] [--] <command>...`: lxc-attach in this node's container (the bed always
    clears the environment, as --keep-env 0 does)."""
    if "--" in rest:
        cut = rest.index("--")
        words, _opts, _ = parse(rest[:cut])  # --keep-env: the bed clears the environment either way
        command = rest[cut + 1:]
    else:
        words, command = rest[:1], rest[1:]
    vmid = words[0] if words else ""
    if not vmid.isdigit():
        raise Die("400 Parameter verification failed.\nvmid: type check ('integer') failed\n"
                  "pct exec <vmid> [<extra-args>] [OPTIONS]\n")
    if not command:
        raise Die("400 Parameter verification failed.\nextra-args: missing command\n")
    present(cfg, vmid)
    import subprocess

    state = subprocess.run([cfg["lxc_info"], "-n", vmid, "-P", cfg["lxcpath"], "-s"], capture_output=True,
                           text=True, check=False).stdout
    if "RUNNING" not in state and "FROZEN" not in state:
        raise Die(f"CT {vmid} not running\n")
    attach = cfg["lxc_attach"]
    os.execv(attach, [attach, "-n", vmid, "-P", cfg["lxcpath"], "--clear-env", "--", *command])  # noqa: S606
    return 127


def present(cfg: dict[str, Any], vmid: str) -> None:
    """pct acts on this node's containers only: another node's has no config here."""
    if not os.path.isdir(os.path.join(cfg["ctroot"], vmid)):
        raise Die(f"Configuration file 'nodes/{cfg['node']}/lxc/{vmid}.conf' does not exist\n")


def pct_mount(cfg: dict[str, Any], command: str, rest: list[str]) -> int:
    vmid = rest[0] if len(rest) == 1 else ""
    if not vmid.isdigit():
        raise Die(f"400 not enough arguments\npct {command} <vmid>\n")
    present(cfg, vmid)
    if command == "mount":
        out(f"mounted CT {vmid} in '{os.path.join(cfg['ctroot'], vmid, 'rootfs')}'\n")
    return 0


# -------------------------------------------------------------------- main


def record(cfg: dict[str, Any], tool: str, args: list[str]) -> None:
    line = json.dumps({"tool": tool, "argv": args}) + "\n"
    fd = os.open(cfg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    with open(argv[1]) as fh:
        cfg = json.load(fh)
    tool, args = argv[2], argv[3:]
    record(cfg, tool, args)
    try:
        if tool == "pct" and args[:1] == ["exec"]:
            return pct_exec(cfg, args[1:])
        if tool == "pct" and args[:1] in (["mount"], ["unmount"]):
            return pct_mount(cfg, args[0], args[1:])
        api = Api(cfg)
        return pct(cfg, api, args) if tool == "pct" else pvesh(cfg, api, args)
    except Die as exc:
        err(str(exc))
        return 255


if __name__ == "__main__":
    sys.exit(main(sys.argv))
