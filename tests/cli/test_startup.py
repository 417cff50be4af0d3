"""Heavy libraries stay out of the start-up path: `pveoci --help` and the lifecycle commands import only what
they use (docs/performance.md). Measured as which modules get imported, not as time."""

from __future__ import annotations

import subprocess
import sys


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_imports_no_network_ssh_or_compression_library() -> None:
    loaded = imported_after("from pveoci.cli.main import app")
    for heavy in ("requests", "proxmoxer", "paramiko", "zstandard", "rich", "pveoci.oci.spec"):
        assert heavy not in loaded, heavy


def test_state_and_list_do_not_load_the_spec_models_or_ssh() -> None:
    loaded = imported_after("import pveoci.runtime, pveoci.backends.api, pveoci.cache")
    for heavy in ("pveoci.oci.spec", "pveoci.lxc.mapping", "paramiko", "zstandard"):
        assert heavy not in loaded, heavy


def test_the_pct_backend_loads_no_http_client() -> None:
    loaded = imported_after("import pveoci.runtime, pveoci.backends.pct, pveoci.backends.auto, pveoci.cache")
    for heavy in ("requests", "proxmoxer", "pveoci.pve.client", "paramiko", "pveoci.oci.spec", "zstandard"):
        assert heavy not in loaded, heavy
