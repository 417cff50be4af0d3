"""Record a scenario's cassette against a fresh test bed (fresh: VMIDs from 100, no templates, no tickets).

What differs from one bed to the next (its directory, random loopback addresses, fresh secrets and
host keys) is replaced or scrubbed, so recording again gives the same file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pveoci.testing import Recorder
from tests.cassettes.bundle import make_cassette_bundle
from tests.cassettes.scenarios import Scenario
from tests.testbed import Testbed


class BedFaults:
    """Faults injected into the bed's fakepve while recording."""

    def __init__(self, bed: Testbed) -> None:
        self.pve = bed.pve

    def fail(self, method: str, suffix: str, **how: Any) -> None:
        self.pve.fail(method, suffix, **how)

    def lose_quorum(self) -> None:
        self.pve.lose_quorum()

    def revoke_tickets(self) -> None:
        self.pve.revoke_tickets()


def password_config(bed: Testbed) -> Path:
    """A config whose profile `bed` logs in as root@pam with a password (fresh for this bed) instead of a token."""
    password = secrets.token_urlsafe(18)
    bed.pve.password = password
    secret_file = bed.root / "password"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    text = bed.config_path.read_text()
    start = text.index(f'token_id = "{bed.token_id}"')
    end = text.index("\n", text.index("token_secret_file"))
    path = bed.root / "config-password.toml"
    path.write_text(text[:start] + f'user = "root@pam"\npassword_file = "{secret_file}"' + text[end:])
    return path


def bed_replacements(bed: Testbed) -> dict[str, str]:
    """The bed's own directory and addresses, and the kernel its nodes report (this host's: its machine stays,
    pveoci picks the init by it), as the same text in every recording."""
    kernel = os.uname()
    out = {str(bed.root): "/bed", bed.api_address: "192.0.2.1", kernel.release: "6.8.12-bed",
           kernel.version: "#1 SMP the bed's kernel"}
    for i, address in enumerate(bed.addresses.values()):
        out[address] = f"192.0.2.{10 + i}"
    return out


def record(scenario: Scenario, out: Path, workdir: Path | None = None, busybox: Path | None = None,
           on_bed: Callable[[Testbed], None] | None = None) -> Path:
    """Record one scenario on a bed of its own into out/<name>.json; returns that path. `on_bed` sees the bed
    before the recording starts."""
    busybox = busybox or Path(shutil.which("busybox") or "busybox")
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix=f"pveoci-record-{scenario.name}-")) if workdir is None else workdir
    old_cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg-cache")  # where templates are packed
    try:
        with Testbed(work / "bed", nodes=("pve1", "pve2"), lxc=scenario.lxc) as bed:
            config = password_config(bed) if scenario.auth == "ticket" else bed.config_path
            if on_bed is not None:
                on_bed(bed)
            bundle = make_cassette_bundle(work / "bundle", busybox)
            path = out / f"{scenario.name}.json"
            with Recorder(path, "bed", config=config, replace=bed_replacements(bed), root=work / "cache") as rec:
                scenario.run(rec.runtime, bundle, BedFaults(bed))
        return path
    finally:
        if old_cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old_cache
        if own:
            shutil.rmtree(work, ignore_errors=True)
