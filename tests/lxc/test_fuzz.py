"""Hostile config.json documents, by the thousand: loaded from bytes, mapped for every kind of target, the process
encoded for the init. Whatever the document, each step ends in a result or a PveociError, never anything else.

Offline and deterministic: 9,000 mutations of real specs by a seeded generator, and 1,500 documents from
hypothesis (derandomized), each test checking it saw all of its own.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pveoci import errors, planning
from pveoci.lxc.draft import Plan
from pveoci.lxc.mapping import exec_process
from pveoci.oci.bundle import Bundle
from pveoci.oci.defaults import default_spec
from pveoci.process import encode, encode_arg
from pveoci.settings import Profile
from tests.oci import RUNTIME_TOOLS_CONFIG

MUTATED = 9_000
GENERATED = 1_500
# Profiles, cluster versions, and whether root acts: what the mapping is made for.
TARGETS = ((Profile(), (9, 1), None), (Profile(unprivileged=False), (9, 0), True),
           (Profile(bridge="vmbr1", rootfs_storage="zfs"), (8, 4), False))

# Values a hostile (or careless) config.json holds where a well-formed one has something sensible.
HOSTILE: tuple[object, ...] = (
    None, True, False, 0, 1, -1, -2, -5, 15, 16, 17, 1000, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1,
    2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, 1.0, 0.5, -0.0, 1e308,
    "", " ", "\0", "a\0b", "\ud800", "x\udcff", "\udfff\ud800", "=", "A=", "=B", "PATH=", "PATH=:::", "PATH=/nope:",
    "PATH=" + ":" * 5000 + "/bin", "/", "//", "/..", "/../../../../etc", "../..", ".", "..", "-", "--", "0-99999999999",
    "0-" + "9" * 5000, "9999-0", "0,,1", " 0 - 3 ", "٣", "0-٣", "1-2-3", "🙂", "\n", "\r\n", "a" * 5000,
    "/" + "../" * 3000 + "bin/sh", "/" + "a" * 5000, "$(reboot)", "`id`", "a;b", "x,y=z", "\t", "\u2028",
    "SIGKILL", "SIGTERM", "9", "65", "RLIMIT_NOFILE", "RLIMIT_BOGUS", "1.3.0", "1.3", "99.99.99-rc.1+b",
    "/bin/sh", "sh", "loop", "/loop", "/abs", "/home/app", "c", "b", "p", "u", "user", "network", "bind",
    [], {}, [None], [""], ["sh"], ["/bin/sh", "-c", "true"], ["\ud800"], ["A=1", "A=2"], [[[]]], {"": ""},
    {"\ud800": "x"}, {"a": {"b": {"c": None}}}, [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}],
    [{"type": "user"}, {"type": "user"}], [{"destination": "x", "type": "bind", "source": "rel", "options": ["bind"]}],
    {"limit": -5}, {"limit": -1, "swap": -2}, {"cpus": "0-99999999999"}, {"quota": 2**63 - 1, "period": 1},
)
NUMBERS = (-(2**63), -2, -5, -1, 0, 1, 15, 16 * 2**20 + 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, 2**64, 10**30)
TEXTS = ("", "\0", "\ud800", "x\udcff", "\n", "\r\n", "a" * 5000, "🙂", "$(reboot)")
PATHS = ("/", "/..", "/../../etc", "rel", "/home/app", "/nope", "/bin/\ud800", "/" + "a" * 5000, "/a\nb")
PROGRAMS = ("sh", "/bin/sh", "/abs", "/loop", "/usr/bin/sh", "data", "../bin/sh", "/" + "../" * 3000 + "bin/sh",
            "\ud800", "a/\udcff", "sh\n", "")
ENV = ("A=1", "A=\ud800", "\ud800=x", "PATH=/bin\ud800", "PATH=", "PATH=:::", "PATH=" + ":" * 5000 + "/bin",
       "PATH=/nope:/bin", "PATH=relative", "=B", "A", "A=" + "x" * 200_000, "A=\n")
# Where hostile values do the most harm (the fields the mapping and the init read), with what to put there.
HOT: dict[tuple[str | int, ...], tuple[object, ...]] = {
    ("process", "args"): ([], ["sh"], ["sh", "\ud800"], ["sh", "a" * 200_000], ["/bin/sh", "-c", "true"]),
    ("process", "args", 0): PROGRAMS,
    ("process", "env"): ([], list(ENV[:3]), ["A=1", "A=2"]),
    ("process", "env", 0): ENV,
    ("process", "cwd"): PATHS,
    ("process", "user"): ({}, {"uid": 2**32 - 1, "gid": 0}, {"uid": 0, "gid": 0, "additionalGids": [2**32 - 1] * 3}),
    ("process", "user", "uid"): NUMBERS,
    ("process", "user", "umask"): NUMBERS,
    ("process", "rlimits"): ([{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}],
                             [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}],
                             [{"type": "RLIMIT_CORE", "hard": 2**64 - 1, "soft": 2**64 - 1}]),
    ("process", "oomScoreAdj"): NUMBERS,
    ("process", "terminal"): (True, 1, "yes"),
    ("root", "path"): (*PATHS, "rootfs", "rootfs/../rootfs", "\n", "a" * 5000, "/bin/sh"),
    ("hostname",): (*TEXTS, "-", "a." * 200, "UPPER_case"),
    ("annotations",): ({"": ""}, {"\ud800": "x"}, {"k": "\ud800"}),
    ("annotations", "org.opencontainers.image.stopSignal"): ("SIGKILL", "9", "65", "0", "SIGNOPE", "\n", *TEXTS),
    ("linux", "namespaces"): ([{"type": "user"}, {"type": "user"}], [{"type": "bogus"}],
                              [{"type": "pid", "path": "rel"}]),
    ("linux", "resources", "memory", "limit"): NUMBERS,
    ("linux", "resources", "memory", "swap"): NUMBERS,
    ("linux", "resources", "cpu", "cpus"): ("0-99999999999", "0-" + "9" * 5000, "9999-0", "0,,1", " 0 - 3 ", "٣",
                                            "0-٣", "1-2-3", "0-8191", "8192", "0-3,0-3", ",", "", *TEXTS),
    ("linux", "resources", "cpu", "quota"): NUMBERS,
    ("linux", "resources", "cpu", "period"): NUMBERS,
    ("linux", "resources", "cpu", "shares"): NUMBERS,
    ("linux", "resources", "pids", "limit"): NUMBERS,
    ("linux", "sysctl"): ({"": ""}, {"net.ipv4.ip_forward": "\ud800"}),
    ("linux", "cgroupsPath"): TEXTS,
    ("ociVersion",): ("1.3", "", "99.99.99-rc.1+b", "\ud800", *TEXTS),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle directory whose rootfs has a program to find, links relative, absolute and in a loop, a home."""
    bundle = tmp_path_factory.mktemp("bundle")
    root = bundle / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "sh").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "sh").chmod(0o755)
    (root / "bin" / "data").write_bytes(b"not a program")
    (root / "usr").mkdir()
    (root / "usr" / "bin").symlink_to("../bin")
    (root / "abs").symlink_to("/bin/sh")
    (root / "loop").symlink_to("loop")
    (root / "home" / "app").mkdir(parents=True)
    return bundle


class Outcomes:
    """How the documents fared: each step's results by kind, and whatever was raised that should not have been."""

    def __init__(self) -> None:
        self.documents = 0
        self.counts: dict[str, int] = {}
        self.crashes: list[str] = []

    def tally(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def step(self, name: str, raw: bytes, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, or None when it raised a PveociError; anything else is a crash, kept with the input."""
        try:
            result = call(*args)
        except errors.PveociError as exc:
            if not exc.message or "\n" in exc.message:  # the one line an error must be
                self.crashes.append(f"{name}: {type(exc).__name__} not one line: {exc.message!r}")
            self.tally(f"{name}: {type(exc).__name__}")
            return None
        except Exception as exc:  # what this test is for
            self.crashes.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]} <- {raw[:300]!r}")
            return None
        self.tally(f"{name}: ok")
        return result


def _encode(plan: Plan) -> bytes:
    return encode(plan.process) + encode_arg(plan.process).encode()


def _options(plan: Plan) -> list[bytes]:
    # The options go to Proxmox as UTF-8 form fields (or pct's words).
    return [f"{key}={value}".encode() for key, value in plan.options.items()]


def exercise(raw: bytes, bundle: Path, out: Outcomes) -> None:
    """One document through everything pveoci does with a config.json before the cluster is asked."""
    out.documents += 1
    loaded = out.step("load", raw, Bundle.parse, bundle, raw)
    if loaded is None:
        return
    for profile, version, root_pam in TARGETS:
        plan = out.step("map", raw, partial(planning.plan_bundle, container_id="fuzz", pve_version=version, size=1,
                                            root_pam=root_pam), loaded, profile)
        if plan is None:
            continue
        out.step("strict", raw, plan.check, True)
        out.step("encode", raw, _encode, plan)
        out.step("options", raw, _options, plan)
    out.step("exec --process", raw, lambda: encode(exec_process(json.loads(raw)["process"])))


def _somewhere(doc: object, rng: random.Random) -> tuple[str | int, ...]:
    """The JSON path of a value of doc chosen by a random walk down from the top (the top itself, at times)."""
    path: tuple[str | int, ...] = ()
    while isinstance(doc, (dict, list)) and doc and rng.random() < 0.8:
        key: str | int = rng.choice(list(doc)) if isinstance(doc, dict) else rng.randrange(len(doc))
        path, doc = (*path, key), doc[key]  # type: ignore[index]
    return path


def _put(doc: Any, path: tuple[str | int, ...], value: object) -> Any:
    """doc with value at path, making the objects on the way (a list index past the end appends)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        if not isinstance(doc, list):
            doc = []
        if head < len(doc):
            doc[head] = _put(doc[head], rest, value)
        else:
            doc.append(_put(None, rest, value))
        return doc
    if not isinstance(doc, dict):
        doc = {}
    doc[head] = _put(doc.get(head), rest, value)
    return doc


def _remove(doc: Any, path: tuple[str | int, ...]) -> None:
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]


def mutate(base: dict[str, Any], rng: random.Random) -> bytes:
    """One to four changes to a real spec: a hostile value somewhere (often where it matters most), a field
    removed, a list grown; then, now and then, its bytes damaged."""
    doc: Any = json.loads(json.dumps(base))  # a copy, faster than deepcopy
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5:
            path = rng.choice(list(HOT))
            doc = _put(doc, path, copy.deepcopy(rng.choice(HOT[path] if rng.random() < 0.8 else HOSTILE)))
        elif choice < 0.75:
            doc = _put(doc, _somewhere(doc, rng), copy.deepcopy(rng.choice(HOSTILE)))
        elif choice < 0.9:
            path = _somewhere(doc, rng)
            if path:
                _remove(doc, path)
        else:
            grown = _get(doc, _somewhere(doc, rng))
            if isinstance(grown, list) and grown:
                grown.extend(copy.deepcopy(grown[: rng.randint(1, 3)]))
    raw = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        raw = _damage(raw, rng)
    return raw


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _damage(raw: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(raw) + 1)
    numbers = list(re.finditer(rb"(?<=[:,\[] )-?[0-9]+(?=[,\]}])", raw))  # JSON numbers, as json.dumps writes them
    if numbers and rng.random() < 0.3:
        number = rng.choice(numbers)
        return raw[:number.start()] + b"9" * rng.choice((21, 400, 5000)) + raw[number.end():]
    return rng.choice((
        raw[:at],                                                      # cut short
        raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1:],         # a byte changed
        raw[:at] + rng.choice((b"\xff", b"\xc3", b"NaN", b"-Infinity", b"[" * 50, b"\x00")) + raw[at:],
    ))


def bases() -> list[dict[str, Any]]:
    """Real specs: runc's starter (and its rootless form), and a runtime-tools config that uses most fields."""
    tools = json.loads(RUNTIME_TOOLS_CONFIG.read_text(encoding="utf-8"))
    return [default_spec(), default_spec(rootless=True), default_spec(["/bin/sh", "-c", "exit 3"]), tools]


def test_mutated_real_specs_end_in_a_plan_or_a_pveoci_error(bundle: Path) -> None:
    rng = random.Random(17)  # reproducible
    out = Outcomes()
    specs = bases()
    for _ in range(MUTATED):
        exercise(mutate(rng.choice(specs), rng), bundle, out)
    assert out.crashes == [], f"{len(out.crashes)} crashes, the first:\n" + "\n".join(out.crashes[:10])
    assert out.documents == MUTATED
    # The mutations must leave enough documents valid for the mapping and the encoding to be exercised.
    assert out.counts.get("map: ok", 0) > MUTATED // 5, out.counts
    assert out.counts.get("encode: ok", 0) > MUTATED // 5, out.counts
    assert out.counts.get("map: MappingError", 0) > 50, out.counts


JSON_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**65), max_value=2**65) | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
HOSTILE_VALUES = st.sampled_from(HOSTILE) | st.sampled_from([v for vs in HOT.values() for v in vs]) | JSON_VALUES


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _documents() -> st.SearchStrategy[dict[str, Any]]:
    """config.json shapes: the fields pveoci reads, mostly well-formed (so the mapping sees them) with odd values
    where a type allows them, then up to two hostile values where they do the most harm."""
    program = st.sampled_from(["/bin/sh", "sh", "/abs", "/usr/bin/sh", "data", "/loop", "../bin/sh"]) | st.text()
    folder = st.sampled_from(["/", "/home/app", "/bin", "/nope", "/.."]) | st.text(max_size=8).map("/{}".format)
    small = st.integers(min_value=0, max_value=2**30)
    # Mostly what a type allows (so that the mapping sees it), now and then the edges of every width.
    ints = st.one_of(small, small, small, st.sampled_from([-2, -1, 2**31, 2**32 - 1, 2**63 - 1, 2**64]))
    env = st.builds("{}={}".format, st.sampled_from(["PATH", "HOME", "A"]) | st.text(max_size=4),
                    st.lists(folder | st.just(""), max_size=3).map(":".join) | st.text(max_size=8))
    process = st.fixed_dictionaries(
        {"args": st.lists(program, min_size=1, max_size=3), "cwd": folder},
        optional={"env": st.lists(env, max_size=3),
                  "user": st.fixed_dictionaries({"uid": ints, "gid": ints}, optional={
                      "umask": ints, "additionalGids": st.lists(ints, max_size=3)}),
                  "rlimits": st.lists(st.fixed_dictionaries({
                      "type": st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_X"]), "hard": ints,
                      "soft": ints}), max_size=2),
                  "oomScoreAdj": ints, "terminal": st.booleans(), "noNewPrivileges": st.booleans()})
    cpus = st.sampled_from(["0-3,6", "0-99999999999", "3-1", "0-8191", "8192", ""]) | st.text(max_size=10)
    resources = _optional(memory=_optional(limit=ints, swap=ints, reservation=ints),
                          cpu=_optional(cpus=cpus, quota=ints, period=ints, shares=ints), pids=_optional(limit=ints))
    namespaces = st.lists(st.sampled_from(["pid", "mount", "user", "network", "ipc", "uts", "cgroup"]), max_size=4,
                          unique=True).map(lambda types: [{"type": t} for t in types])
    linux = _optional(resources=resources, namespaces=namespaces, sysctl=st.dictionaries(st.text(), st.text(),
                      max_size=2), cgroupsPath=st.text(max_size=8))
    root = st.fixed_dictionaries({"path": st.just("rootfs")}, optional={"readonly": st.booleans()})
    doc = st.fixed_dictionaries(
        {"ociVersion": st.just("1.3.0"), "process": process, "root": root},
        optional={"hostname": st.text(max_size=70), "linux": linux, "mounts": st.lists(_optional(
                  destination=folder, type=st.sampled_from(["bind", "proc", "tmpfs"]), source=folder,
                  options=st.lists(st.sampled_from(["bind", "ro", "rbind"]), max_size=2)), max_size=2),
                  "annotations": st.dictionaries(st.sampled_from(["org.opencontainers.image.stopSignal", "x"]),
                                                 st.sampled_from(["SIGTERM", "9", "SIGNOPE"]) | st.text(max_size=6),
                                                 max_size=2)})
    hostile = st.lists(st.tuples(st.sampled_from(list(HOT)), HOSTILE_VALUES), max_size=2)
    return st.builds(_with, doc, hostile)


def _with(doc: dict[str, Any], changes: list[tuple[tuple[str | int, ...], object]]) -> dict[str, Any]:
    for path, value in changes:
        doc = _put(doc, path, copy.deepcopy(value))
    return doc


def test_generated_documents_end_in_a_plan_or_a_pveoci_error(bundle: Path) -> None:
    out = Outcomes()

    @settings(max_examples=GENERATED, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(_documents())
    def one(doc: dict[str, Any]) -> None:
        exercise(json.dumps(doc).encode(), bundle, out)

    one()
    assert out.crashes == [], f"{len(out.crashes)} crashes, the first:\n" + "\n".join(out.crashes[:10])
    assert out.documents >= 1_000
    assert out.counts.get("map: ok", 0) > 100, out.counts
