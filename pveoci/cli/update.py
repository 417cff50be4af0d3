"""runc's `update`: a container's resource limits changed while it runs, from a JSON document or runc's flags.

The flags are read as runc 1.1 reads them (memory sizes as docker's units.RAMInBytes: `512m`, `1.5g`, `-1`) into
the same `linux.resources` document a `--resources` file holds; Runtime.update does the rest.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from pveoci.cli import images as image_flags
from pveoci.cli import render
from pveoci.cli.invocation import IdArgument, Output, OutputOption, cli

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest
    from pveoci.oci.runtime_spec import Resources
    from pveoci.runtime.imageupdate import ImageUpdate

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# docker/go-units' sizeRegex (what runc's RAMInBytes reads), its prefixes binary; ASCII digits as Go's \d.
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)*) ?([kKmMgGtTpP])?[iI]?[bB]?")
_PREFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_UINT = re.compile(r"[0-9]+")
_INT = re.compile(r"[+-]?[0-9]+")

Flag = Optional[str]  # noqa: UP045 - typer reads the annotations at run time, also on Python 3.10
Number = Optional[int]  # noqa: UP045
NO_OPTION = "Proxmox VE has no option for it"


def _opt(flag: str, metavar: str, text: str, *short: str, hidden: bool = False) -> Any:
    return typer.Option(flag, *short, metavar=metavar, help=text, hidden=hidden, show_default=False)


def _bad(flag: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'{flag}'")


def ram_in_bytes(flag: str, text: str) -> int:
    """A memory size as runc reads one: -1 (unlimited), or a number with an optional k, m, g, t, p (binary: 512m is
    512 MiB) and an optional i and b; a fraction counts (1.5g), what is below a byte is dropped."""
    if text == "-1":
        return -1
    match = _SIZE.fullmatch(text)
    try:
        value = float(match[1]) * _PREFIX.get((match[2] or "").lower(), 1) if match else None
    except ValueError:  # 1.2.3: the pattern takes it, a number it is not
        value = None
    if value is None:
        raise _bad(flag, f"invalid size: {text!r} (bytes, or with a suffix k, m, g, t or p: 512m; -1: unlimited)")
    if value > INT64_MAX:
        raise _bad(flag, f"{text!r} is more bytes than a limit can hold (at most {INT64_MAX})")
    return int(value)


def _whole(flag: str, text: str, *, signed: bool) -> int:
    """A number as Go's strconv reads it in base 10 (ParseInt with its sign, ParseUint without), in 64 bits."""
    low, high = (-INT64_MAX - 1, INT64_MAX) if signed else (0, UINT64_MAX)
    if not (_INT if signed else _UINT).fullmatch(text):
        raise _bad(flag, f"{text!r} is not a whole number" + ("" if signed else " of 0 or more"))
    value = int(text)
    if not low <= value <= high:
        raise _bad(flag, f"{text} is out of range ({low} to {high})")
    return value


def document(flags: dict[str, Any]) -> dict[str, Any]:
    """runc's update flags (by their names, None when not given) as the `linux.resources` document they ask for;
    what runc takes for "unset" (0, an empty string) is left out, as runc leaves it unchanged."""
    memory = {key: ram_in_bytes(f"--{flag}", flags[flag]) for key, flag in (
        ("limit", "memory"), ("swap", "memory-swap"), ("reservation", "memory-reservation"),
        ("kernel", "kernel-memory"), ("kernelTCP", "kernel-memory-tcp")) if flags.get(flag) is not None}
    cpu: dict[str, Any] = {key: _whole(f"--{flag}", flags[flag], signed=signed) for key, flag, signed in (
        ("period", "cpu-period", False), ("quota", "cpu-quota", True), ("shares", "cpu-share", False),
        ("realtimePeriod", "cpu-rt-period", False), ("realtimeRuntime", "cpu-rt-runtime", True))
        if flags.get(flag) is not None}
    cpu.update({key: flags[flag] for key, flag in (("cpus", "cpuset-cpus"), ("mems", "cpuset-mems"))
                if flags.get(flag)})
    doc: dict[str, Any] = {"memory": memory, "cpu": cpu}
    for key, inner, flag, low, high in (("pids", "limit", "pids-limit", -INT64_MAX - 1, INT64_MAX),
                                        ("blockIO", "weight", "blkio-weight", 0, 2**16 - 1)):
        value = flags.get(flag)
        if value is not None and not low <= value <= high:
            raise _bad(f"--{flag}", f"{value} is out of range ({low} to {high})")
        if value:
            doc[key] = {inner: value}
    return {key: value for key, value in doc.items() if value}


def _resources(path: str, flags: dict[str, Any]) -> Resources:
    """The document of --resources FILE (or - for stdin): a regular file or a pipe, never a device, at most 4 MiB."""
    from pveoci.oci import jsonfile
    from pveoci.oci.runtime_spec import parse_resources

    given = [f"--{name}" for name, value in flags.items() if value is not None]
    if given:
        raise _bad(given[0], "not with --resources (runc would ignore it): give every limit in the document")
    where = "stdin" if path == "-" else path
    raw = jsonfile.read_stream(sys.stdin.buffer, where) if path == "-" else jsonfile.read(Path(path), pipes=True)
    return parse_resources(jsonfile.decode(raw, where), where=where)


def _refuse_rdt(l3_cache_schema: str | None, mem_bw_schema: str | None) -> None:
    from pveoci import errors

    for flag, value in (("--l3-cache-schema", l3_cache_schema), ("--mem-bw-schema", mem_bw_schema)):
        if value:
            raise errors.Unsupported(f"{flag}: Intel RDT is not available to containers on Proxmox VE")


# runc's resource flags, by their parameters' names (the flag: - for _).
_RESOURCE_FLAGS = ("memory", "memory_swap", "memory_reservation", "kernel_memory", "kernel_memory_tcp", "cpu_period",
                   "cpu_quota", "cpu_share", "cpu_rt_period", "cpu_rt_runtime", "cpuset_cpus", "cpuset_mems",
                   "pids_limit", "blkio_weight")
ResourcesOption = Annotated[Flag, _opt("--resources", "FILE", "A runtime-spec linux.resources JSON document (- reads "
                                       "stdin); no other flag with it.", "-r")]
MemorySwapOption = Annotated[Flag, _opt("--memory-swap", "SIZE", "Memory plus swap, as --memory (-> swap: this "
                                        "minus the memory limit).")]
CpuQuotaOption = Annotated[Flag, _opt("--cpu-quota", "N", "CFS quota in microseconds per period (-> cpulimit = "
                                      "quota/period; -1: no limit).")]
CpuShareOption = Annotated[Flag, _opt("--cpu-share", "N", "CPU shares (-> cpuunits, the cgroup v2 weight runc "
                                      "makes of them).")]
CpusetCpusOption = Annotated[Flag, _opt("--cpuset-cpus", "LIST", "CPUs such as 0-3 (-> cores: as many, Proxmox VE "
                                        "picks which).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="With --image: show what would change (image, "
                                            "process, size, what is kept) and change nothing.")]
KeepOption = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--keep", metavar="PATH", help="With --image: an absolute path whose content the old tree keeps, as the "
    "image's volumes and mount points do (repeatable).")]
GraceOption = Annotated[float, typer.Option("--grace", metavar="SECONDS", min=0, help="With --image: how long the "
                                            "new process must keep running, else the old image comes back (0: do "
                                            "not watch).")]


def update(
    ctx: typer.Context,
    container_id: IdArgument,
    resources: ResourcesOption = None,
    memory: Annotated[Flag, _opt("--memory", "SIZE", "Memory limit: bytes, or 512m, 1g (-> memory).")] = None,
    memory_swap: MemorySwapOption = None,
    memory_reservation: Annotated[Flag, _opt("--memory-reservation", "SIZE", f"Refused: {NO_OPTION}.")] = None,
    kernel_memory: Annotated[Flag, _opt("--kernel-memory", "SIZE", "", hidden=True)] = None,
    kernel_memory_tcp: Annotated[Flag, _opt("--kernel-memory-tcp", "SIZE", "", hidden=True)] = None,
    cpu_period: Annotated[Flag, _opt("--cpu-period", "N", "CFS period in microseconds, with --cpu-quota.")] = None,
    cpu_quota: CpuQuotaOption = None,
    cpu_share: CpuShareOption = None,
    cpu_rt_period: Annotated[Flag, _opt("--cpu-rt-period", "N", "Refused: no realtime scheduling.")] = None,
    cpu_rt_runtime: Annotated[Flag, _opt("--cpu-rt-runtime", "N", "Refused: no realtime scheduling.")] = None,
    cpuset_cpus: CpusetCpusOption = None,
    cpuset_mems: Annotated[Flag, _opt("--cpuset-mems", "LIST", f"Refused: {NO_OPTION}.")] = None,
    pids_limit: Annotated[Number, _opt("--pids-limit", "N", f"Refused unless 0: {NO_OPTION}.")] = None,
    blkio_weight: Annotated[Number, _opt("--blkio-weight", "N", f"Refused unless 0: {NO_OPTION}.")] = None,
    l3_cache_schema: Annotated[Flag, _opt("--l3-cache-schema", "SCHEMA", "Refused: no Intel RDT.")] = None,
    mem_bw_schema: Annotated[Flag, _opt("--mem-bw-schema", "SCHEMA", "Refused: no Intel RDT.")] = None,
    image: image_flags.ImageOption = None,
    args: image_flags.ArgsArgument = None,
    dry_run: DryRunOption = False,
    grace: GraceOption = 3.0,
    keep: KeepOption = None,
    entrypoint: image_flags.EntrypointOption = None,
    env: image_flags.EnvOption = None,
    workdir: image_flags.WorkdirOption = None,
    user: image_flags.UserOption = None,
    authfile: image_flags.AuthfileOption = None,
    cert_dir: image_flags.CertDirOption = None,
    tls_verify: image_flags.TlsVerifyOption = True,
    pull: image_flags.PullOption = "auto",
    output: OutputOption = None,
) -> None:
    """Change the resource limits of a created, running or paused container, while it runs; or, with
    --image, move it to another image in place.

    As runc: from a linux.resources JSON document (--resources FILE, or - for stdin) or from the
    flags; a value of 0 leaves that limit as it is. Proxmox VE applies memory, swap, cpulimit and
    cpuunits at once, and cores within seconds. What it has no option for (pids, blkio, ...) is
    refused, naming the field; nothing changes then. With -o json, prints what was asked of Proxmox.

    --image REF: the container keeps its VMID, node, mount points and their data, MAC address,
    resources, annotations and the content of the image's volumes (and --keep); its root filesystem and
    process become the image's (with the flags of create), swapped on the node; started again, it must
    run --grace seconds, else the old image comes back (exit 33). A killed update is finished or undone
    by the next command. See docs/images.md.

    Examples:

    \b
      pveoci update --memory 256m --cpuset-cpus 0-1 hello
      pveoci update --cpu-quota 50000 --cpu-period 100000 hello   # half a CPU
      echo '{"memory": {"limit": 268435456}}' | pveoci update --resources - hello
      pveoci update --image registry.example/app:1.2 --dry-run web
      pveoci update --image registry.example/app@sha256:0123... -e LOG=debug web
    """
    _refuse_rdt(l3_cache_schema, mem_bw_schema)
    _update(ctx, locals())


def _update(ctx: typer.Context, given: dict[str, Any]) -> None:
    """`update` with its parameters by name: the limits, or (--image) the image."""
    flags = {name.replace("_", "-"): given[name] for name in _RESOURCE_FLAGS}
    made = image_flags.request(given["image"], args=given["args"], entrypoint=given["entrypoint"], env=given["env"],
                               workdir=given["workdir"], user=given["user"], authfile=given["authfile"],
                               cert_dir=given["cert_dir"], tls_verify=given["tls_verify"], pull=given["pull"])
    cid, output, resources = given["container_id"], given["output"], given["resources"]
    if made is not None:
        _update_image(ctx, output, cid, made, resources=resources, flags=flags, dry_run=given["dry_run"],
                      grace=given["grace"], keep=given["keep"] or [])
        return
    for flag in ("dry_run", "keep"):
        if given[flag]:
            raise _bad(f"--{flag.replace('_', '-')}", "only with --image")
    wanted = _resources(resources, flags) if resources is not None else document(flags)
    c = cli(ctx, output)
    change = c.runtime().update(cid, wanted)
    if c.json:
        render.emit_json(change.to_json())


def _update_image(ctx: typer.Context, output: Output | None, cid: str, made: ImageRequest, *, resources: str | None,
                  flags: dict[str, Any], dry_run: bool, grace: float, keep: list[str]) -> None:
    from pveoci.cli.display import display

    given = [f"--{name}" for name, value in flags.items() if value is not None]
    if resources is not None or given:
        raise _bad((given or ["--resources"])[0], "not with --image: update the image, then the limits")

    c = cli(ctx, output)
    rt = c.runtime()
    with display() as shown:
        change = rt.update_image(cid, made, dry_run=dry_run, grace=grace, keep=keep, progress=shown)
    if c.json:
        render.emit_json(change.to_json())
        return
    typer.echo(_described(change))


def _described(change: ImageUpdate) -> str:
    head = f"{change.id} (CT {change.vmid} on {change.node}, {change.status})"
    if not change.changed:
        return f"{head} is already on {change.image} with this process: nothing changed"
    p = change.process
    lines = [f"{'would update' if change.dry_run else 'updated'} {head} to {change.image} ({change.digest})",
             f"  template     {change.template} -> {change.new_template}",
             f"  size         {change.size / 1048576:.1f} MiB on root disk {change.disk}",
             f"  process      {' '.join(p['args'])}",
             f"  as           user {p['user']} in {p['cwd']}, stop signal {p['stop_signal']}",
             *(f"  env          {e}" for e in p["env"]),
             *(f"  keeps        {k}: {v}" for k, v in change.kept.items()),
             *(f"  keeps data   {path}" for path in change.keeps),
             *(f"  finding      {f}" for f in change.findings)]
    if change.state is not None:
        lines.append(f"  now          {change.state.status}")
    return "\n".join(lines)
