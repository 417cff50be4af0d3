"""`process`: what pveoci's init runs (the ProcessSpec), and the process fields PVE cannot honour."""

from __future__ import annotations

from dataclasses import replace

from pveoci import errors
from pveoci.lxc.draft import Draft, shown
from pveoci.oci.runtime_spec import Capabilities as OciCapabilities
from pveoci.process import CAPABILITIES as CAPABILITIES_KNOWN
from pveoci.process import RLIMITS, CapSets, Rlimit


def args(d: Draft) -> None:
    """The program is looked up in the rootfs now: a bundle whose program is not there cannot run at all."""
    proc = d.oci_process
    path_env = next((e.split("=", 1)[1] for e in proc.env or () if e.startswith("PATH=")), None)
    program = d.find_program(proc.args[0], path_env, proc.cwd)
    if program is None:
        where = "the default PATH" if path_env is None else f"PATH {_path_shown(path_env)}"
        raise errors.MappingError(f"process.args[0]: {shown(proc.args[0])} is not an executable file in the rootfs "
                                  f"({where})")
    d.process = replace(d.process, path=program, args=tuple(proc.args))
    d.note("process.args", "applied", f"run by pveoci's init as PID 1: {program}")


def _path_shown(path_env: str) -> str:
    """A PATH as it is, unless it would not read as one line (control characters, a great length)."""
    return path_env if path_env.isprintable() and len(path_env) <= 200 else shown(path_env)


def env(d: Draft) -> None:
    d.process = replace(d.process, env=tuple(d.oci_process.env or ()))
    d.note("process.env", "applied", "exactly these variables, set by pveoci's init")


def cwd(d: Draft) -> None:
    d.process = replace(d.process, cwd=d.oci_process.cwd)
    d.note("process.cwd", "applied", "set by pveoci's init")


def user(d: Draft) -> None:
    """No user: root, with the init's umask."""
    user = d.oci_process.user
    if user is None:
        return
    groups = tuple(user.additional_gids or ())
    d.process = replace(d.process, uid=user.uid, gid=user.gid, additional_gids=groups, umask=user.umask)
    d.note("process.user", "applied", f"uid {user.uid}, gid {user.gid}"
           + (f", groups {','.join(map(str, groups))}" if groups else "")
           + (f", umask {user.umask:04o}" if user.umask is not None else "") + ", set by pveoci's init")
    if user.username:
        d.note("process.user.username", "unsupported", "a Windows field")


def rlimits(d: Draft) -> None:
    """The runtime-spec: a type that cannot be mapped to a kernel resource MUST be an error, whatever the mode (a
    limit the process counts on is never dropped); a type given twice is refused with the spec (runtime_spec.py)."""
    limits = []
    for i, rl in enumerate(d.oci_process.rlimits or ()):
        resource = RLIMITS.get(rl.type)
        if resource is None:
            raise errors.MappingError(f"process.rlimits[{i}].type: {shown(rl.type)} is not a Linux resource limit")
        limits.append(Rlimit(resource, rl.soft, rl.hard))
    d.process = replace(d.process, rlimits=tuple(limits))
    if limits:
        d.note("process.rlimits", "applied", "set by pveoci's init (a hard limit above the node's needs "
               "CAP_SYS_RESOURCE)")


def no_new_privileges(d: Draft) -> None:
    value = d.oci_process.no_new_privileges
    d.process = replace(d.process, no_new_privileges=bool(value))
    if value is not None:
        d.note("process.noNewPrivileges", "applied", "set by pveoci's init")


def oom_score_adj(d: Draft) -> None:
    value = d.oci_process.oom_score_adj
    d.process = replace(d.process, oom_score_adj=value)
    if value is not None:
        d.note("process.oomScoreAdj", "applied", "set by pveoci's init")


def terminal(d: Draft) -> None:
    """Every container's stdio is its console (cmode=console); a terminal only changes what the finding says."""
    d.process = replace(d.process, terminal=bool(d.oci_process.terminal))
    if d.oci_process.terminal:
        d.note("process.terminal", "approximated", "the process's stdio is the container console "
               "(pct console); no console socket")


def console_size(d: Draft) -> None:
    if d.oci_process.console_size is not None:
        d.note("process.consoleSize", "approximated", "the console's size is set by whoever attaches to it")


#: Capabilities LXC withholds from every container (its common.conf's lxc.cap.drop, which PVE keeps): the init
#: cannot give what it does not hold. `pveoci features` lists every other one.
LXC_WITHHELD = frozenset({"CAP_SYS_MODULE", "CAP_SYS_TIME", "CAP_SYS_RAWIO", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE"})
#: The capabilities a spec may set: pveoci's init gives the process exactly its sets (capabilities() below).
CAPABILITIES: tuple[str, ...] = tuple(name for name in CAPABILITIES_KNOWN if name not in LXC_WITHHELD)
#: Whether process.apparmorProfile and process.selinuxLabel are applied: no, PVE applies its own profile
#: (security_labels() below). `pveoci features` says so; tests/test_features.py holds these to the functions.
APPARMOR = SELINUX = False
_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def cap_sets(caps: OciCapabilities, where: str) -> tuple[CapSets, set[str]]:
    """The five sets as masks, and the names among them LXC withholds. A name that is no Linux capability is an
    error (runc 1.1 and the runtime-spec: it cannot be mapped to a kernel interface)."""
    masks = []
    for kind in _SETS:
        mask = 0
        for i, name in enumerate(getattr(caps, kind) or ()):
            number = CAPABILITIES_KNOWN.get(name)
            if number is None:
                raise errors.MappingError(f"{where}.{kind}[{i}]: {shown(name)} is not a Linux capability")
            mask |= 1 << number
        masks.append(mask)
    withheld = {name for kind in _SETS for name in getattr(caps, kind) or () if name in LXC_WITHHELD}
    return CapSets(*masks), withheld


def capabilities(d: Draft) -> None:
    caps = d.oci_process.capabilities
    if caps is None:
        return
    sets, withheld = cap_sets(caps, "process.capabilities")
    d.process = replace(d.process, capabilities=sets)
    d.note("process.capabilities", "applied", "the bounding, effective, permitted, inheritable and ambient sets, "
           "set by pveoci's init")
    if withheld:
        d.note("process.capabilities", "unsupported", f"{', '.join(sorted(withheld))}: LXC withholds "
               f"{'it' if len(withheld) == 1 else 'them'} from every container, so the process does not get "
               f"{'it' if len(withheld) == 1 else 'them'}")


def security_labels(d: Draft) -> None:
    proc = d.oci_process
    d.unsupported_if_set("process", {"apparmorProfile": proc.apparmor_profile, "selinuxLabel": proc.selinux_label},
                         "PVE applies its own AppArmor profile to containers", even_empty=False)


def scheduling(d: Draft) -> None:
    proc = d.oci_process
    d.unsupported_if_set("process", {"scheduler": proc.scheduler, "ioPriority": proc.io_priority,
                                     "execCPUAffinity": proc.exec_cpu_affinity, "commandLine": proc.command_line})


def check(d: Draft) -> None:
    """What the init could not carry out is refused now, before anything changes on the cluster.

    A NUL byte never gets this far: the spec's model refuses it, naming the JSON path (a BundleError).
    """
    problems = d.process.problems()
    if problems:
        raise errors.MappingError("; ".join(f"process: {problem}" for problem in problems))


def start(d: Draft) -> None:
    """PVE 9.1+ starts the init through the entrypoint option, which the caller sets (it carries the process spec)."""
    if not d.target.has_entrypoint:
        major, minor = d.target.pve_version
        d.note("process", "approximated", f"PVE {major}.{minor} has no entrypoint option (9.1+): the template's "
               "/sbin/init is pveoci's init")
