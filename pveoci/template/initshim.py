"""The init shim: a tiny static ELF executable, emitted by Python, that LXC runs as the container's init.

A container's process must start with exactly the OCI spec's argv, env, cwd, user, umask, rlimits,
noNewPrivileges and oomScoreAdj, yet the rootfs may hold no shell or tools at all (distroless images), and
the machines pveoci runs on have no compiler. So `build` writes the machine code by hand: a straight run of
system calls with every value baked in, ending in execve(), which makes the real process PID 1.

The program, in order: write /proc/self/oom_score_adj; prlimit64() each rlimit; umask(); setgroups();
setresgid(); setresuid(); prctl(PR_SET_NO_NEW_PRIVS); chdir(); execve(). A failing call writes
"pveoci-init: <step> failed: errno <N>" to stderr and exits with status 127.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pveoci.process import RLIM_INFINITY, RLIMITS, ProcessSpec, Rlimit, rlimit_name
from pveoci.template.pack import ExtraFile

__all__ = ["RLIMITS", "RLIM_INFINITY", "SHIM_PATH", "SUPPORTED_ARCHES", "Rlimit", "ShimSpec", "build", "shim_extras",
           "validate"]

SUPPORTED_ARCHES = ("x86_64",)
SHIM_PATH = "/.pveoci/init"


@dataclass(frozen=True)
class ShimSpec:
    path: str  # absolute path of the program inside the rootfs, already resolved by the caller
    argv: tuple[str, ...]
    env: tuple[str, ...]  # exactly the environment the process gets ("KEY=VALUE")
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None  # None: leave as is
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None  # None: leave as is

    @classmethod
    def from_process(cls, process: ProcessSpec) -> ShimSpec:
        """The shim for a process spec; what it has no room for (terminal, stop signal) is left out."""
        return cls(path=process.path, argv=process.args, env=process.env, cwd=process.cwd, uid=process.uid,
                   gid=process.gid, additional_gids=process.additional_gids, umask=process.umask,
                   rlimits=process.rlimits, no_new_privileges=process.no_new_privileges,
                   oom_score_adj=process.oom_score_adj)


_BASE = 0x400000  # non-PIE load address of the single segment (the whole file, headers included)
_EHDR_SIZE = 64
_PHDR_SIZE = 56
_ID_MAX = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to setresuid(), so it is not a valid id
_NGROUPS_MAX = 65536

_SYS_WRITE, _SYS_OPEN, _SYS_CLOSE, _SYS_EXECVE, _SYS_CHDIR, _SYS_UMASK = 1, 2, 3, 59, 80, 95
_SYS_SETRESUID, _SYS_SETGROUPS, _SYS_SETRESGID, _SYS_PRCTL = 117, 116, 119, 157
_SYS_EXIT_GROUP, _SYS_PRLIMIT64 = 231, 302
_O_WRONLY_CLOEXEC = 0o1 | 0o2000000
_PR_SET_NO_NEW_PRIVS = 38
_EXIT_FAILED = 127

# `mov <reg>, imm64` prefixes; syscall arguments go in rdi, rsi, rdx, r10, r8, r9.
_MOV_IMM64 = {"rax": b"\x48\xb8", "rcx": b"\x48\xb9", "rdx": b"\x48\xba", "rsi": b"\x48\xbe",
              "rdi": b"\x48\xbf", "r10": b"\x49\xba", "r8": b"\x49\xb8", "r9": b"\x49\xb9"}
_ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
_FD = "rbx"  # a syscall argument taken from rbx, where the oom_score_adj fd is kept
_MOV_FROM_RBX = {"rdi": b"\x48\x89\xdf"}  # mov rdi, rbx
_SYSCALL = b"\x0f\x05"
_TEST_RAX = b"\x48\x85\xc0"
_FAIL_BLOCK_SIZE = 10 + 10 + 5  # mov rsi, mov rdx, jmp rel32


class _Data:
    """Bytes placed at a known absolute address, so the code can refer to them by immediate."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.buf = bytearray()

    def add(self, blob: bytes, align: int = 1) -> int:
        self.buf += bytes(-len(self.buf) % align)
        addr = self.base + len(self.buf)
        self.buf += blob
        return addr

    def string(self, text: str) -> int:
        return self.add(_cstring(text))

    def pointers(self, addrs: list[int]) -> int:
        return self.add(struct.pack(f"<{len(addrs) + 1}Q", *addrs, 0), 8)


class _Code:
    """The instruction stream; it starts with the shared failure routine, at offset 0."""

    def __init__(self, data: _Data) -> None:
        self.data = data
        self.buf = bytearray(_fail_routine())

    def mov(self, reg: str, value: int) -> None:
        self.buf += _MOV_IMM64[reg] + struct.pack("<Q", value % 2**64)

    def syscall(self, nr: int, *args: int | str) -> None:
        """Load the number and arguments (immediates, or _FD: the fd kept in rbx), then trap."""
        self.mov("rax", nr)
        for reg, arg in zip(_ARG_REGS, args, strict=False):
            if isinstance(arg, str):
                self.buf += _MOV_FROM_RBX[reg]
            else:
                self.mov(reg, arg)
        self.buf += _SYSCALL

    def fail(self, step: str) -> None:
        """Hand the step's message to the failure routine (which also reads the errno left in rax)."""
        msg = f"pveoci-init: {step} failed: errno ".encode()
        self.mov("rsi", self.data.add(msg))
        self.mov("rdx", len(msg))
        self.buf += b"\xe9" + struct.pack("<i", 0 - (len(self.buf) + 5))  # jmp to offset 0

    def check(self, step: str) -> None:
        """The kernel returns -errno in rax on failure: skip the failure block unless rax is negative."""
        self.buf += _TEST_RAX + b"\x79" + bytes([_FAIL_BLOCK_SIZE])  # jns over the block
        self.fail(step)


def _fail_routine() -> bytes:
    """write(2, rsi, rdx); write the errno (negated rax) in decimal and a newline; exit_group(127).

    The digits are built right to left just below rsp: the stack is mapped and nothing else uses it.
    """
    return b"".join([
        b"\x49\x89\xc4",  # mov r12, rax      -- keep -errno; syscall overwrites rax
        b"\x49\xf7\xdc",  # neg r12
        b"\x48\xb8" + struct.pack("<Q", _SYS_WRITE),  # mov rax, SYS_write
        b"\x48\xbf" + struct.pack("<Q", 2),  # mov rdi, 2
        _SYSCALL,
        b"\x48\x89\xe3",  # mov rbx, rsp
        b"\x48\xff\xcb",  # dec rbx
        b"\xc6\x03\x0a",  # mov byte [rbx], '\n'
        b"\x4c\x89\xe0",  # mov rax, r12
        b"\x48\xb9" + struct.pack("<Q", 10),  # mov rcx, 10
        # digit loop: 16 bytes, then jnz back over them and itself
        b"\x31\xd2",  # xor edx, edx
        b"\x48\xf7\xf1",  # div rcx
        b"\x80\xc2\x30",  # add dl, '0'
        b"\x48\xff\xcb",  # dec rbx
        b"\x88\x13",  # mov [rbx], dl
        _TEST_RAX,
        b"\x75\xee",  # jnz -18
        b"\x48\x89\xde",  # mov rsi, rbx
        b"\x48\x89\xe2",  # mov rdx, rsp
        b"\x48\x29\xda",  # sub rdx, rbx
        b"\x48\xb8" + struct.pack("<Q", _SYS_WRITE),
        b"\x48\xbf" + struct.pack("<Q", 2),
        _SYSCALL,
        b"\x48\xb8" + struct.pack("<Q", _SYS_EXIT_GROUP),
        b"\x48\xbf" + struct.pack("<Q", _EXIT_FAILED),
        _SYSCALL,
    ])


def _cstring(text: str) -> bytes:
    raw = text.encode()
    if b"\0" in raw:
        raise ValueError(f"NUL byte in {text!r}")
    return raw + b"\0"


def validate(spec: ShimSpec) -> None:
    """Raise ValueError for a spec the shim cannot carry out (relative paths, NULs, ids or limits out of range)."""
    if not spec.path.startswith("/"):
        raise ValueError(f"program path must be absolute: {spec.path!r}")
    if not spec.cwd.startswith("/"):
        raise ValueError(f"cwd must be absolute: {spec.cwd!r}")
    if not spec.argv:
        raise ValueError("argv must not be empty")
    for ident in (spec.uid, spec.gid, *spec.additional_gids):
        if not 0 <= ident <= _ID_MAX:
            raise ValueError(f"user or group id out of range: {ident}")
    if len(spec.additional_gids) > _NGROUPS_MAX:
        raise ValueError(f"more than {_NGROUPS_MAX} additional gids")
    if spec.umask is not None and not 0 <= spec.umask <= 0o777:
        raise ValueError(f"umask out of range: {spec.umask:#o}")
    if spec.oom_score_adj is not None and not -1000 <= spec.oom_score_adj <= 1000:
        raise ValueError(f"oom_score_adj out of range: {spec.oom_score_adj}")
    for lim in spec.rlimits:
        if not 0 <= lim.resource < 2**31 or not 0 <= lim.soft <= RLIM_INFINITY or not 0 <= lim.hard <= RLIM_INFINITY:
            raise ValueError(f"rlimit out of range: {lim}")


def build(spec: ShimSpec, arch: str = "x86_64") -> bytes:
    """The shim's ELF file; the same spec always gives the same bytes."""
    if arch not in SUPPORTED_ARCHES:
        raise ValueError(f"init shim: unsupported architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHES)})")
    validate(spec)
    data = _Data(_BASE + _EHDR_SIZE + _PHDR_SIZE)  # data first: its addresses are known before any code
    code = _Code(data)

    # oom_score_adj before the rlimits: a low RLIMIT_NOFILE could otherwise make the open() fail.
    # Both need root (lowering the score, raising hard limits), so both come before setresuid().
    if spec.oom_score_adj is not None:
        proc_file = "/proc/self/oom_score_adj"
        text = str(spec.oom_score_adj).encode()
        code.syscall(_SYS_OPEN, data.string(proc_file), _O_WRONLY_CLOEXEC, 0)
        code.check(f"open {proc_file}")
        code.buf += b"\x48\x89\xc3"  # mov rbx, rax -- the fd, kept for write() and close()
        code.syscall(_SYS_WRITE, _FD, data.add(text), len(text))
        code.check(f"write {proc_file} {spec.oom_score_adj}")
        code.syscall(_SYS_CLOSE, _FD)
        code.check(f"close {proc_file}")

    for lim in spec.rlimits:
        new = data.add(struct.pack("<QQ", lim.soft, lim.hard), 8)
        code.syscall(_SYS_PRLIMIT64, 0, lim.resource, new, 0)
        code.check(f"prlimit {rlimit_name(lim.resource)} {lim.soft}:{lim.hard}")

    if spec.umask is not None:
        code.syscall(_SYS_UMASK, spec.umask)  # cannot fail; returns the old mask

    # Always: with no additional gids this drops the supplementary groups LXC's init inherited.
    groups = spec.additional_gids
    gids = data.add(struct.pack(f"<{len(groups)}I", *groups), 4) if groups else 0  # gid_t is 32 bits
    code.syscall(_SYS_SETGROUPS, len(groups), gids)
    code.check(f"setgroups {','.join(map(str, groups)) or '(none)'}")
    code.syscall(_SYS_SETRESGID, spec.gid, spec.gid, spec.gid)  # groups before user: afterwards we may lack the right
    code.check(f"setresgid {spec.gid}")
    code.syscall(_SYS_SETRESUID, spec.uid, spec.uid, spec.uid)
    code.check(f"setresuid {spec.uid}")
    if spec.no_new_privileges:
        code.syscall(_SYS_PRCTL, _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        code.check("prctl PR_SET_NO_NEW_PRIVS")
    code.syscall(_SYS_CHDIR, data.string(spec.cwd))  # after setresuid: the user must be able to reach it
    code.check(f"chdir {spec.cwd}")

    path = data.string(spec.path)
    argv = data.pointers([data.string(arg) for arg in spec.argv])
    envp = data.pointers([data.string(var) for var in spec.env])
    code.syscall(_SYS_EXECVE, path, argv, envp)
    code.fail(f"execve {spec.path}")  # execve() only returns on failure
    return _elf(data, code)


def _elf(data: _Data, code: _Code) -> bytes:
    """The file: ELF header, one program header, the data, the code (16-byte aligned)."""
    code_offset = _EHDR_SIZE + _PHDR_SIZE + len(data.buf)
    code_offset += -code_offset % 16
    size = code_offset + len(code.buf)
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01",  # 64-bit, little-endian, ELF version 1, System V ABI (padded with zeros)
        2, 62, 1,  # ET_EXEC, EM_X86_64, EV_CURRENT
        _BASE + code_offset + len(_fail_routine()),  # e_entry: just past the failure routine at the code's start
        _EHDR_SIZE, 0, 0,  # e_phoff, e_shoff (no sections), e_flags
        _EHDR_SIZE, _PHDR_SIZE, 1, 0, 0, 0,  # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X, the whole file
    body = ehdr + phdr + bytes(data.buf)
    return body + bytes(code_offset - len(body)) + bytes(code.buf)


def shim_extras(process: ProcessSpec, legacy_init: bool) -> list[ExtraFile]:
    """The files the template gets besides the rootfs: the shim, and /sbin/init on PVE < 9.1 (no entrypoint)."""
    files = [ExtraFile(SHIM_PATH.lstrip("/"), build(ShimSpec.from_process(process)), 0o755)]
    if legacy_init:
        files.append(ExtraFile("sbin/init", link=SHIM_PATH))
    return files
