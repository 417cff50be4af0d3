"""Every failure is one line `pveoci: error: ...` on stderr with a documented exit code; never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakepve.certs import make_cert

from tests.harness import invoke
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def one_line(err: str) -> str:
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert err.startswith("pveoci: error: ")
    assert "Traceback" not in err
    return err[len("pveoci: error: "):].rstrip("\n")


def test_usage_error_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nodes", "--frobnicate")
    assert result.code == 2
    assert one_line(result.err) == "No such option: --frobnicate (see 'pveoci nodes --help')"


def test_missing_host_is_a_config_error(tmp_path: Path) -> None:
    env = {"PVEOCI_CONFIG": str(tmp_path / "none.toml"), "PATH": "/usr/bin:/bin"}
    proc = invoke(["nodes"], env=env)
    assert proc.code == 3
    assert "no API host for profile 'default'" in one_line(proc.err)


def test_world_readable_secret_file_is_refused(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    token = cluster.root / "token"
    token.chmod(0o644)
    try:
        result = cli("nodes")
    finally:
        token.chmod(0o600)
    assert result.code == 3
    assert one_line(result.err) == (f"secret file {token} is accessible by group or others (mode 0644); "
                                    f"run: chmod 600 {token}")


def test_connection_refused_exits_4(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--port", "1", "nodes", env={"PVEOCI_RETRIES": "0"})
    assert result.code == 4
    assert one_line(result.err).endswith(":1: connection refused")


def test_api_that_does_not_answer_exits_4(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.flaky_network(hang_rate=1.0, hang_secs=3)
    result = cli("nodes", env={"PVEOCI_RETRIES": "0", "PVEOCI_TIMEOUT": "1"})
    assert result.code == 4
    assert "did not answer in time" in one_line(result.err)


def test_untrusted_certificate_exits_5(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other_ca = make_cert(str(tmp_path), name="other")[0]
    result = cli("--ca-file", other_ca, "nodes")
    assert result.code == 5
    assert "is not trusted (certificate verify failed" in one_line(result.err)


def test_wrong_fingerprint_exits_5(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--fingerprint", "11" * 32, "nodes")
    assert result.code == 5
    assert "does not match the pinned fingerprint" in one_line(result.err)


def test_refused_token_exits_6_without_showing_the_secret(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nodes", env={"PVEOCI_TOKEN_SECRET": "not-the-secret"})
    assert result.code == 6
    assert "refused the credentials of pveoci@pve!bed" in one_line(result.err)
    assert "not-the-secret" not in result.err


def test_debug_adds_details_but_never_the_secret(cli, cluster: Testbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "pveoci.log"
    result = cli("--debug", "--log", str(log), "nodes")
    assert result.code == 0
    assert "GET /nodes -> 200" in result.err
    assert cluster.token_secret not in result.err + result.out + log.read_text()
    tls = cli("--debug", "--fingerprint", "22" * 32, "nodes")
    assert tls.code == 5
    assert tls.err.strip().splitlines()[-1].startswith("pveoci: error: TLS certificate")
    assert len(tls.err.strip().splitlines()) > 1


def test_json_log_gets_the_error_as_runc_writes_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "log.json"
    result = cli("--log", str(log), "--log-format", "json", "--port", "1", "nodes", env={"PVEOCI_RETRIES": "0"})
    assert result.code == 4
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    last = entries[-1]
    assert last["level"] == "error"
    assert last["msg"].endswith(":1: connection refused")
    assert set(last) == {"level", "msg", "time"}


def test_ctrl_c_is_a_clean_interruption(cluster: Testbed) -> None:
    # A process: what is tested is how it takes a real SIGINT (from the terminal) while it waits on the network.
    cluster.pve.flaky_network(hang_rate=1.0, hang_secs=4)
    proc = subprocess.Popen([sys.executable, "-m", "pveoci", "nodes"], env=cluster.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert one_line(err) == "interrupted"
