"""An image reference as the user writes it, checked before anything runs: where the image is and what names it.

The forms are skopeo's and podman's:

    registry.example:5000/team/app:1.2      a registry (`docker://` may be written before it)
    team/app@sha256:<64 hex>                 a digest: the image is that manifest, whatever tags say
    oci-archive:/path/app.tar[:ref]          an OCI archive (`podman save --format oci-archive`)
    docker-archive:/path/app.tar[:ref]       `docker save`'s archive
    oci:/path/layout[:ref]                   an OCI layout directory

A name without a registry goes where skopeo sends it (its default registry: no short-name search). Every
part is checked against the distribution spec's grammar, so nothing the user wrote reaches skopeo's command
line as an option or as anything but the reference it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pveoci import errors

REGISTRY = "docker"
LOCAL_TRANSPORTS = ("oci-archive", "docker-archive", "oci")
NAME_MAX = 255      # the distribution spec's limit on a repository name
REF_MAX = 4096

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_NAME = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
                   rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_LOCAL_REF = re.compile(rf"^(?:{_TAG}|(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?)$")


@dataclass(frozen=True)
class Reference:
    """A checked reference. `transport` is "docker" (a registry) or one of LOCAL_TRANSPORTS."""

    transport: str
    name: str = ""          # a registry's repository, with its domain when one was written
    tag: str = ""
    digest: str = ""        # "sha256:<hex>" when the reference pins one
    path: str = ""          # a local archive or layout
    inner: str = ""         # the image within an archive or layout (":ref"), if named

    @property
    def remote(self) -> bool:
        return self.transport == REGISTRY

    @property
    def domain(self) -> str:
        """The registry as written ("" when left to skopeo's rules)."""
        first, slash, _ = self.name.partition("/")
        return first if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")) \
            else ""

    def skopeo(self, digest: str = "") -> str:
        """The reference as skopeo's `transport:details`; `digest` pins a registry image to that manifest."""
        if self.remote:
            if digest:
                return f"docker://{self.name}@{digest}"
            tail = (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
            return f"docker://{self.name}{tail or ':latest'}"
        return f"{self.transport}:{self.path}" + (f":{self.inner}" if self.inner else "")

    def __str__(self) -> str:
        if self.remote:
            return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        return f"{self.transport}:{self.path}" + (f":{self.inner}" if self.inner else "")


def parse(text: str) -> Reference:
    """The reference `text` names; ImageError (one line) for anything that is not one."""
    if not isinstance(text, str) or not text:
        raise errors.ImageError("an image reference cannot be empty")
    if len(text) > REF_MAX or not text.isprintable():
        raise errors.ImageError(f"invalid image reference {_shown(text)}: it holds control characters or is "
                                f"longer than {REF_MAX} characters")
    transport, colon, rest = text.partition(":")
    if colon and transport in LOCAL_TRANSPORTS:
        return _local(transport, rest, text)
    if text.startswith("docker://"):
        text = text.removeprefix("docker://")
    elif "://" in text:
        raise errors.ImageError(f"invalid image reference {_shown(text)}: unknown transport "
                                f"(a registry's name, docker://, {', '.join(t + ':' for t in LOCAL_TRANSPORTS)})")
    return _remote(text)


def _remote(text: str) -> Reference:
    match = _NAME.match(text)
    if match is None:
        raise errors.ImageError(f"invalid image reference {_shown(text)}: expected [registry/]repository[:tag]"
                                "[@sha256:digest], repository in lower case")
    domain, path = match["domain"], match["path"]
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"
                                   or domain.startswith("[")):
        path, domain = f"{domain}/{path}", None   # "team/app": a path, not a registry
    name = f"{domain}/{path}" if domain else path
    if len(path) > NAME_MAX:
        raise errors.ImageError(f"invalid image reference {_shown(text)}: the repository name is longer than "
                                f"{NAME_MAX} characters")
    return Reference(REGISTRY, name=name, tag=match["tag"] or "", digest=match["digest"] or "")


def _local(transport: str, rest: str, text: str) -> Reference:
    path, inner = rest, ""
    # oci:/dir:ref and the archives' path:ref: the last colon splits when what follows is a reference.
    head, colon, tail = rest.rpartition(":")
    if colon and head and "/" not in tail and _LOCAL_REF.match(tail):
        path, inner = head, tail
    if not path:
        raise errors.ImageError(f"invalid image reference {_shown(text)}: {transport}: needs a path")
    if "\0" in path:
        raise errors.ImageError(f"invalid image reference {_shown(text)}: the path holds a NUL byte")
    return Reference(transport, path=os.path.abspath(path), inner=inner)


def _shown(text: str) -> str:
    return repr(text[:200] + ("..." if len(text) > 200 else ""))
