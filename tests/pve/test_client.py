"""The Proxmox client against the bed's API: TLS trust, auth, faults, typed errors."""

from __future__ import annotations

import pytest

from pveoci import errors
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def test_verifies_the_api_certificate_with_the_ca_file(connect) -> None:  # type: ignore[no-untyped-def]
    assert connect().version()["version"].startswith("9.")


def test_system_cas_do_not_trust_a_private_certificate(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect(ca_file=None, env={})
    client.session.auth.verify_ssl = True  # what a profile without ca_file gets
    with pytest.raises(errors.TlsError, match=r"is not trusted \(certificate verify failed"):
        client.version()


def test_pinned_fingerprint_is_trusted(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect(fingerprint=cluster.fingerprint.lower())
    assert client.version()["version"]


def test_wrong_fingerprint_is_refused_with_both_fingerprints(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    wrong = "AB:" * 31 + "AB"
    with pytest.raises(errors.TlsError, match="does not match the pinned fingerprint") as err:
        connect(fingerprint=wrong).version()
    assert wrong in err.value.message
    assert cluster.fingerprint in err.value.message


def test_ticket_login_with_password(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect(token_id=None, user="root@pam", env={"PVEOCI_PASSWORD": cluster.root_password})
    assert client.identity == "root@pam"
    assert client.version()


def test_wrong_password_is_an_auth_error(connect) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.AuthError, match=r"login to https://.* failed: wrong user or password"):
        connect(token_id=None, user="root@pam", env={"PVEOCI_PASSWORD": "nope"}).version()


def test_expired_ticket_is_renewed_transparently(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect(token_id=None, user="root@pam", env={"PVEOCI_PASSWORD": cluster.root_password})
    client.version()
    cluster.pve.revoke_tickets()
    assert client.nodes()
    cluster.pve.ticket_ttl = 0  # every ticket is expired at once: one new login, then give up
    cluster.pve.revoke_tickets()
    with pytest.raises(errors.AuthError):
        client.nodes()
    assert client.session.auth.login_count == 3


def test_reads_survive_thirty_percent_dropped_connections(  # type: ignore[no-untyped-def]
        connect, cluster: Testbed, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="pveoci.pve")
    client = connect()
    cluster.pve._random.seed(7)
    cluster.pve.flaky_network(drop_rate=0.3)
    for _ in range(40):
        assert {n["node"] for n in client.nodes()} == {"pve1", "pve2"}
    # Dropped connections never reach the server's request log, answered ones do: all 40.
    answered = [r for r in cluster.pve.requests if r[1].endswith("/nodes")]
    assert len(answered) >= 40
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 5  # about 30% of ~57 attempts were dropped and retried


def test_a_dropped_write_is_not_repeated(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    cluster.pve.flaky_network(drop_rate=1.0)
    with pytest.raises(errors.ConnectError, match="connection reset"):
        client.post("nodes", "pve1", "lxc", vmid=990, ostemplate="local:vztmpl/x.tar.zst")
    cluster.pve.flaky_network(drop_rate=0.0)
    assert not [r for r in cluster.pve.requests if r[0] == "POST" and r[1].endswith("/lxc")]


def test_lost_quorum_is_a_clear_error_on_writes(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.lose_quorum()
    client = connect()
    assert client.nodes()  # reads still work
    with pytest.raises(errors.NoQuorum, match="the cluster has no quorum"):
        client.post("nodes", "pve1", "lxc", vmid=991, ostemplate="local:vztmpl/x.tar.zst")


def test_offline_node_is_a_clear_error(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.set_node_offline("pve2")
    with pytest.raises(errors.NodeOffline, match="node 'pve2' is offline") as err:
        connect(retries=1).node_storages("pve2")
    assert err.value.node == "pve2"


def test_missing_privilege_is_named(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    secret = cluster.add_token("weak@pve!t", ["VM.Audit"])
    client = connect(token_id="weak@pve!t", env={"PVEOCI_TOKEN_SECRET": secret})
    with pytest.raises(errors.PermissionDenied,
                       match=r"weak@pve!t lacks Datastore.AllocateTemplate on /storage/local") as err:
        client.post("nodes", "pve1", "storage", "local", "upload", content="vztmpl")
    assert (err.value.path, err.value.privilege) == ("/storage/local", "Datastore.AllocateTemplate")
    # Where PVE does not name the privilege, the request is named instead.
    with pytest.raises(errors.PermissionDenied, match=r"permission denied for weak@pve!t on POST /nodes/pve1/lxc"):
        client.post("nodes", "pve1", "lxc", vmid=992, ostemplate="local:vztmpl/x.tar.zst")


def test_parameter_errors_are_typed(connect) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.InvalidParameter, match="vmid") as err:
        connect().post("nodes", "pve1", "lxc", vmid="x", ostemplate="local:vztmpl/x.tar.zst")
    assert "vmid" in err.value.errors


def test_connection_refused_is_a_connect_error(connect) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.ConnectError, match=r"cannot reach the Proxmox API at .*: connection refused"):
        connect(port=1, retries=0).version()
