"""The OCI-to-LXC mapping: a runtime spec, plus the profile and what the cluster can do, as PVE create options
and the process spec pveoci's init runs.

A pure function: no network, and of the filesystem only the bundle's rootfs (to find the program) and
bind mounts' sources (files are copied into the container), through the `find_program` and `look_up` it
is given. It is a table of small functions, one per field or group
of fields (pveoci/lxc/fields_*.py); each sets PVE options or parts of the process spec and reports
a Finding: applied, approximated, provided (LXC does it itself) or unsupported, naming the field
and the reason. docs/mapping.md is the same table for people; keep them in step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pveoci import errors
from pveoci.lxc import (
    fields_container,
    fields_devices,
    fields_lifecycle,
    fields_mounts,
    fields_namespaces,
    fields_process,
    fields_resources,
    fields_security,
    properties,
)
from pveoci.lxc.draft import (
    Draft,
    Finding,
    FindProgram,
    LookUp,
    Options,
    Plan,
    Status,
    Target,
    nothing_here,
    profile_property,
)
from pveoci.lxc.fields_container import dns_hostname
from pveoci.lxc.fields_lifecycle import STOP_SIGNAL_ANNOTATION, signal_name
from pveoci.lxc.fields_resources import cpu_weight
from pveoci.oci.runtime_spec import Spec
from pveoci.process import ProcessSpec

__all__ = ["FIELDS", "STOP_SIGNAL_ANNOTATION", "Finding", "Plan", "Status", "Target", "cpu_weight", "dns_hostname",
           "map_spec", "signal_name"]

FieldMapper = Callable[[Draft], None]

# The field (or group of fields, by its JSON path) each function maps, in the order of their
# findings. A function that finds the bundle cannot run raises MappingError.
FIELDS: tuple[tuple[str, FieldMapper], ...] = (
    ("process.args", fields_process.args),
    ("process.env", fields_process.env),
    ("process.cwd", fields_process.cwd),
    ("process.user", fields_process.user),
    ("process.rlimits", fields_process.rlimits),
    ("process.noNewPrivileges", fields_process.no_new_privileges),
    ("process.oomScoreAdj", fields_process.oom_score_adj),
    ("process.terminal", fields_process.terminal),
    ("process.consoleSize", fields_process.console_size),
    ("process.capabilities", fields_process.capabilities),
    ("process.apparmorProfile, selinuxLabel", fields_process.security_labels),
    ("process.scheduler, ioPriority, execCPUAffinity, commandLine", fields_process.scheduling),
    ("process", fields_process.check),
    ("process", fields_process.start),
    ("hostname", fields_container.hostname),
    ("domainname", fields_container.domainname),
    ("root", fields_container.root),
    ("linux.namespaces", fields_namespaces.listed),
    ("linux.namespaces", fields_namespaces.missing),
    ("linux.namespaces", fields_namespaces.user),
    ("linux.uidMappings, gidMappings", fields_namespaces.id_mappings),
    ("mounts", fields_mounts.mounts),
    ("linux.devices", fields_devices.devices),
    ("linux.resources.memory.limit, swap", fields_resources.memory),
    ("linux.resources.memory", fields_resources.memory_other),
    ("linux.resources.cpu.quota, period", fields_resources.cpu_quota),
    ("linux.resources.cpu.shares", fields_resources.cpu_shares),
    ("linux.resources.cpu.cpus", fields_resources.cpu_cpus),
    ("linux.resources.cpu", fields_resources.cpu_other),
    ("linux.resources.pids", fields_resources.pids),
    ("linux.resources.devices", fields_devices.device_cgroup),
    ("linux.resources", fields_resources.resources_other),
    ("linux.sysctl", fields_security.sysctl),
    ("linux.seccomp", fields_security.seccomp),
    ("linux.maskedPaths", fields_security.masked_paths),
    ("linux.readonlyPaths", fields_security.readonly_paths),
    ("linux", fields_security.linux_other),
    ("linux.cgroupsPath", fields_security.cgroups_path),
    ("hooks", fields_lifecycle.hooks),
    ("annotations", fields_lifecycle.annotations_and_stop_signal),
)


def always(target: Target) -> Options:
    """The options every container gets, whatever its spec says."""
    return {
        "ostype": "unmanaged",  # PVE must not rewrite files in an application rootfs
        "arch": "amd64",
        "cmode": "console",     # the process's stdio is the container console
        "onboot": 0,
        "net0": profile_property(partial(properties.net, target.bridge)),
    }


def map_spec(spec: Spec, target: Target, *, container_id: str, find_program: FindProgram,
             look_up: LookUp = nothing_here) -> Plan:
    """Map the spec onto PVE create options and the process spec for pveoci's init. `find_program(name, PATH,
    cwd)` looks the program up in the rootfs; `look_up(path)` says what a bind mount's source is on this machine
    (by default: nothing, every source is the node's). Raises MappingError only for a bundle that cannot run at
    all."""
    if spec.process is None:
        raise errors.MappingError("process: required by pveoci (a bundle must say what to run)")
    draft = Draft(spec=spec, oci_process=spec.process, target=target, container_id=container_id,
                  find_program=find_program, options=always(target), look_up=look_up)
    for _field, mapper in FIELDS:
        mapper(draft)
    return draft.plan()


def exec_process(data: object, *, where: str = "process.json") -> ProcessSpec:
    """runc's `exec --process FILE`: a runtime-spec `process` object as the spec the init's exec applies.

    The program is not looked up here: `init exec` does it in the container, in the resulting PATH.
    """
    from pveoci.lxc.fields_process import cap_sets
    from pveoci.oci.runtime_spec import parse_process
    from pveoci.process import RLIMITS, Rlimit

    proc = parse_process(data, where=where)
    try:
        caps = None if proc.capabilities is None else cap_sets(proc.capabilities, "process.capabilities")[0]
    except errors.MappingError as e:
        raise errors.BundleError(f"invalid {where}: {e}") from None
    user = proc.user
    limits = tuple(Rlimit(RLIMITS[r.type], r.soft, r.hard) for r in proc.rlimits or () if r.type in RLIMITS)
    # `init exec` runs its own argv (looked up there): the spec's path is not used, but must be absolute.
    path = proc.args[0] if proc.args[0].startswith("/") else "/"
    spec = ProcessSpec(path=path, args=tuple(proc.args), env=tuple(proc.env or ()), cwd=proc.cwd,
                       uid=user.uid if user else 0, gid=user.gid if user else 0,
                       additional_gids=tuple(user.additional_gids or ()) if user else (),
                       umask=user.umask if user else None, rlimits=limits,
                       no_new_privileges=bool(proc.no_new_privileges), oom_score_adj=proc.oom_score_adj,
                       terminal=bool(proc.terminal), capabilities=caps)
    problems = spec.problems()
    if problems:
        raise errors.BundleError(f"invalid {where}: " + "; ".join(problems))
    return spec
