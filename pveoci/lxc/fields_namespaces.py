"""`linux.namespaces` and the id mappings: what LXC gives every container, and privileged or not."""

from __future__ import annotations

from pveoci.lxc.draft import Draft

LXC_NAMESPACES = {"pid", "network", "ipc", "uts", "mount", "cgroup"}
#: The namespaces a spec may ask for: LXC's own, and a user namespace (an unprivileged container). Not `time`, and
#: no namespace joined by its path. `pveoci features` lists these.
NAMESPACES = LXC_NAMESPACES | {"user"}
# The id mapping PVE gives an unprivileged container (see pve-container's LXC::parse_id_maps).
PVE_ID_MAP = (0, 100000, 65536)


def listed(d: Draft) -> None:
    """Each namespace the spec lists."""
    for i, ns in enumerate(d.namespaces.values()):
        path = f"linux.namespaces[{i}]"
        if ns.path and ns.type == "network":   # an engine's (podman's netavark): the node has its own network
            d.note(path, "approximated", f"the network namespace {ns.path} is of this machine; the container gets "
                   f"its own on the node instead, with eth0 on {d.target.bridge} (the profile's network)")
        elif ns.path:
            d.note(path, "unsupported", f"joining an existing {ns.type} namespace ({ns.path}) is not possible in PVE")
        elif ns.type in LXC_NAMESPACES:
            d.note(path, "provided", f"LXC gives every container its own {ns.type} namespace")
        elif ns.type == "time":
            d.note(path, "unsupported", "LXC in PVE does not create time namespaces")


def missing(d: Draft) -> None:
    """A namespace the spec leaves out is shared with the host under runc; LXC gives the container its own."""
    linux = d.spec.linux
    if linux is None or linux.namespaces is None:
        return
    for kind in sorted(LXC_NAMESPACES - set(d.namespaces)):
        extra = f", with eth0 on {d.target.bridge}" if kind == "network" else ""
        d.note("linux.namespaces", "approximated",
               f"no {kind} namespace in the spec: the container gets its own anyway{extra}")


def user(d: Draft) -> None:
    """A user namespace makes an unprivileged container; without one, the profile decides."""
    if "user" in d.namespaces:  # the one of NAMESPACES LXC does not give every container
        d.options["unprivileged"] = 1
        d.note(f"linux.namespaces[{list(d.namespaces).index('user')}]", "applied",
               "an unprivileged container (ids mapped from 100000)")
    elif d.target.unprivileged:
        d.options["unprivileged"] = 1
        d.note("linux.namespaces", "approximated", "no user namespace in the spec, but the profile makes "
               "unprivileged containers (unprivileged = false for a privileged one)")
    else:
        d.options["unprivileged"] = 0
        d.note("linux.namespaces", "applied", "no user namespace: a privileged container (needs Sys.Modify on /)")


def id_mappings(d: Draft) -> None:
    linux = d.spec.linux
    if linux is None:
        return
    for json_key, maps in (("uidMappings", linux.uid_mappings), ("gidMappings", linux.gid_mappings)):
        if not maps:
            continue
        standard = [(m.container_id, m.host_id, m.size) for m in maps] == [PVE_ID_MAP]
        if standard and d.unprivileged:
            d.note(f"linux.{json_key}", "applied", "PVE's standard mapping")
        else:
            d.note(f"linux.{json_key}", "unsupported", "PVE maps 0-65535 to 100000-165535; other mappings need "
                   "raw lxc.idmap keys (root@pam only)")
