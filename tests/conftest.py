"""Fixtures: the local test bed (a simulated cluster), a pveoci runner bound to it, a busybox bundle."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.harness import Result
from tests.image.registry import Registry, missing_for_registry
from tests.init.builds import Builds
from tests.testbed import Testbed, jump, parts
from tests.testbed.bundle import make_busybox_bundle
from tests.testbed.sshd import NodeSshd

# The in-memory cluster and its Runtimes (memory, make_runtime, rt), for every test that needs no node.
pytest_plugins = ("tests.inmemory",)


def need(missing: list[str]) -> None:
    """Skip (or, where the bed is required, fail) when a part of the bed is missing."""
    if not missing:
        return
    reason = "test bed part missing: " + ", ".join(missing)
    if parts.required():
        pytest.fail(reason + f" ({parts.REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


# A suite started in the background (`cmd &` in a script) inherits SIGINT ignored, and so would every pveoci it
# starts: the tests of Ctrl-C would see nothing. Interrupts are put back as an interactive shell has them.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

@pytest.fixture(scope="session")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A two-node cluster: API over HTTPS, one real sshd per node, a pveoci profile pointing at it."""
    need(parts.missing_for_ssh())
    with Testbed(tmp_path_factory.mktemp("bed"), nodes=("pve1", "pve2")) as testbed:
        yield testbed


_BUILDS = pytest.StashKey[Builds]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that check the static programs' builds run last: the builds run meanwhile (tests/init/builds.py)."""
    items.sort(key=lambda item: "static_builds" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or importlib.util.find_spec("ziglang") is None:
        return
    if any("static_builds" in getattr(item, "fixturenames", ()) for item in session.items):
        session.config.stash[_BUILDS] = Builds(Path(tempfile.mkdtemp(prefix="pveoci-builds-"))).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    builds = session.config.stash.get(_BUILDS, None)
    if builds is not None:
        builds.wait_quietly()
        shutil.rmtree(builds.root, ignore_errors=True)


@pytest.fixture(autouse=True)
def secrets_of_this_test() -> Iterator[None]:
    """The secrets a test registers (logs.register_secret: scrubbed from every message) are its own: another
    test's secret ("nope", say) must not mask a word of this one's messages."""
    from pveoci import logs

    before = set(logs._secrets)
    yield
    logs._secrets.intersection_update(before)


@pytest.fixture(scope="session")
def static_builds(request: pytest.FixtureRequest) -> Builds:
    """The init and packer builds of this run (started when the run was collected), waited for by each test."""
    from pveoci.init.build import ZIG_VERSION

    if importlib.util.find_spec("ziglang") is None:
        need([f"ziglang (pip install ziglang=={ZIG_VERSION}; in the dev extra)"])
    return request.config.stash[_BUILDS]


@pytest.fixture(scope="session")
def bed3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A three-node cluster (pve1, pve2, pve3) for placement, migrations, drains and rebalancing."""
    need(parts.missing_for_ssh())
    with Testbed(tmp_path_factory.mktemp("bed3"), nodes=("pve1", "pve2", "pve3")) as testbed:
        yield testbed


@pytest.fixture
def cluster3(bed3: Testbed) -> Iterator[Testbed]:
    """The three-node bed, reset before and after the test."""
    bed3.reset()
    yield bed3
    bed3.reset()


@pytest.fixture
def lxc_bed3(cluster3: Testbed) -> Testbed:
    """The three-node bed with real containers (see lxc_bed)."""
    need(parts.missing_for_lxc())
    cluster3.enable_lxc()
    return cluster3


@pytest.fixture
def cluster(bed: Testbed) -> Iterator[Testbed]:
    """The bed with every fault, token and grant a test adds undone afterwards."""
    bed.reset()
    yield bed
    bed.reset()


__all__ = ["Result"]  # tests import it from here too


@pytest.fixture
def pveoci(cluster: Testbed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the real `pveoci` command line (a subprocess) against the bed, with a local cache of this test's own.
    For a test about the process itself; `cli` runs the same command line in this process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        environment = cluster.env(**{"XDG_STATE_HOME": str(tmp_path / "state"), **(env or {})})
        proc = subprocess.run([sys.executable, "-m", "pveoci", *args], capture_output=True, text=True,
                              env=environment, timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def cli(cluster: Testbed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`pveoci` against the bed as the `pveoci` fixture runs it, but in this process (tests/harness.py)."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return harness.invoke(args, env=cluster.env(**{"XDG_STATE_HOME": str(tmp_path / "state"), **(env or {})}))

    return run


@pytest.fixture
def memory_cli(tmp_path: Path) -> harness.MemoryCli:
    """`pveoci` in this process against an in-memory cluster of two nodes (`memory_cli.backend`), for what needs
    no node: usage, bundles, ids, output formats, exit codes."""
    return harness.MemoryCli(tmp_path / "memory-cli")


@pytest.fixture
def busybox_bundle(tmp_path: Path) -> Path:
    need(parts.missing_for_busybox())
    return make_busybox_bundle(tmp_path / "bundle")


@pytest.fixture
def connect(cluster: Testbed):  # type: ignore[no-untyped-def]
    """A PveClient for the bed's profile, with settings overridden as a flag would."""
    from pveoci import settings
    from pveoci.pve.client import PveClient

    def make(env: dict[str, str] | None = None, **overrides: object) -> PveClient:
        loaded = settings.load(config_path=cluster.config_path, env=env or {}, overrides=overrides)
        return PveClient.from_settings(loaded)

    return make


@pytest.fixture(scope="session")
def jump_host(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSshd]:
    """A bastion sshd beside the bed's nodes (tests.testbed.jump)."""
    with jump.bastion(bed, tmp_path_factory.mktemp("bastion")) as sshd:
        yield sshd


@pytest.fixture(scope="session")
def ssh_runtime_dir() -> Iterator[Path]:
    with jump.runtime_dir() as folder:
        yield folder


@pytest.fixture
def through_jump_host(cluster: Testbed, jump_host: NodeSshd, ssh_runtime_dir: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for pveoci processes that reach the nodes with OpenSSH through the jump host."""
    config = jump.write_config(cluster, jump_host, tmp_path_factory.mktemp("jump"))
    return {"PVEOCI_SSH_TRANSPORT": "openssh", "PVEOCI_SSH_CONFIG_FILE": str(config),
            "XDG_RUNTIME_DIR": str(ssh_runtime_dir)}


@pytest.fixture
def lxc_bed(cluster: Testbed) -> Testbed:
    """The bed with real containers (LXC): a create unpacks its template, start runs the entrypoint, `pct exec`
    works over SSH; files under cluster.ct_dir(node, vmid) (console.log: what the processes print).
    Everything is stopped and removed when the test ends."""
    need(parts.missing_for_lxc())
    cluster.enable_lxc()
    return cluster


@pytest.fixture(scope="session")
def public_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1 with TLS and no auth: anyone may pull, as from a public registry (each test
    module pushes under repositories of its own)."""
    need(missing_for_registry())
    with Registry(tmp_path_factory.mktemp("public-registry"), auth=False) as registry:
        yield registry
