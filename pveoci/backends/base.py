"""The Backend protocol: what the runtime needs from a cluster, whatever carries it (API or pct)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Guest:
    """A container as the cluster reports it."""

    vmid: int
    node: str
    status: str                    # running, stopped, unknown (node offline)
    tags: tuple[str, ...] = ()
    lock: str | None = None
    pid: int | None = None         # host PID of the container's init on its node, when running
    name: str = ""

    @classmethod
    def from_api(cls, item: dict[str, Any], node: str | None = None) -> Guest:
        tags = tuple(t for t in str(item.get("tags") or "").replace(",", ";").split(";") if t)
        pid = item.get("pid")
        return cls(vmid=int(item["vmid"]), node=str(item.get("node") or node or ""),
                   status=str(item.get("status") or "unknown"), tags=tags, lock=item.get("lock") or None,
                   pid=int(pid) if pid not in (None, "") else None, name=str(item.get("name") or ""))


class Backend(Protocol):
    name: str

    def version(self) -> tuple[int, int]: ...

    def next_vmid(self) -> int: ...

    def used_vmids(self) -> set[int]: ...

    def guests(self) -> list[Guest]: ...

    def status(self, node: str, vmid: int) -> Guest: ...

    def config(self, node: str, vmid: int) -> dict[str, Any]: ...

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None: ...

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None: ...

    def start(self, node: str, vmid: int) -> None: ...

    def stop(self, node: str, vmid: int) -> None: ...

    def shutdown(self, node: str, vmid: int, timeout: int) -> None: ...

    def freeze(self, node: str, vmid: int) -> None: ...

    def thaw(self, node: str, vmid: int) -> None: ...

    def destroy(self, node: str, vmid: int) -> None: ...

    def exec(self, node: str, vmid: int, argv: list[str], *, tty: bool = False) -> int: ...

    def capture(self, node: str, vmid: int, argv: list[str]) -> tuple[int, bytes, bytes]: ...

    def signal(self, node: str, pid: int, signame: str) -> None: ...
