"""A recording made fit to keep: literal replacements, secrets scrubbed, volatile values as stand-ins.

Done once, when the recording ends, in the cassette's order (HTTP first: the SSH side uses what
the cluster said, a container's pid in a `kill`), so stand-ins are numbered the same every time.
"""

from __future__ import annotations

from typing import Any

from pveoci.testing.log import RecordLog
from pveoci.testing.normalise import ClusterValues, LocalValues
from pveoci.testing.scrub import Secrets, strings, transform

_COMMANDS = ("run", "exec")


def _literal(value: Any, replace: dict[str, str]) -> Any:
    order = sorted(replace.items(), key=lambda item: len(item[0]), reverse=True)

    def one(text: str) -> str:
        for old, new in order:
            text = text.replace(old, new)
        return text

    return strings(value, one) if order else value


def normalised(log: RecordLog, local: LocalValues, secrets: Secrets,
               replace: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The recording's HTTP and SSH entries as a cassette keeps them."""
    raw_http, raw_ssh = log.of("http"), log.of("ssh")
    for entry in raw_http + raw_ssh:
        transform(entry, secrets.leaf)  # learn every secret (a login's ticket) before scrubbing any entry
    cluster = ClusterValues()
    http = []
    for entry in raw_http:
        clean = strings(secrets.value(_literal(entry, replace)), local.normalise)
        out = {"request": strings(clean["request"], cluster.text)}
        if "response" in clean:
            out["response"] = local.hide_sizes(cluster.answer(clean["response"]))
        else:
            out["error"] = clean["error"]
        http.append(out)
    ssh = []
    for entry in raw_ssh:
        clean = strings(secrets.value(_literal(entry, replace)), local.normalise)
        out = {key: (value if key in _COMMANDS else strings(value, cluster.text)) for key, value in clean.items()}
        for key in _COMMANDS:
            if key in out:
                out[key] = [cluster.word(str(word)) for word in out[key]]
        ssh.append(out)
    return http, ssh
