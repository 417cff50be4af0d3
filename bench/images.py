"""Images, as users run them: `pveoci template push --image` (pull, merge the layers, pack, send) against the same
work done with the tools at hand, and what a second run of the same image costs.

The image is real: three gzip layers of a copy of this machine's /usr/share and /etc (tens of thousands of files,
about 500 MiB; synth.real_tree), the third changing and deleting files of the first two (whiteouts), in a
registry on loopback (Debian's docker-registry, TLS and basic auth). The node is a one-node bed.

- baseline: `skopeo copy docker://... oci:DIR`, each layer unpacked in order with GNU tar (whiteouts applied by
  hand), then `tar --sort=name | zstd -T0 -3 | ssh node 'cat > f'`: what a user would do without pveoci;
- pveoci: `pveoci template push --image REF --node pve1` with an empty cache and a node without the template;
- a second `pveoci create --image REF` of the same image (another container): the registry's requests (by the
  registry's access log) and the bytes sent to the node (its template directory before and after);
- the node's way (`template push --image REF --pull node`, the same image on a registry without auth): the node
  pulls it through Proxmox VE 9.1's oci-registry-pull (the bed's: the real skopeo), a temporary container
  unpacks it (umoci, for Proxmox), the node packs the template; against the same baseline. On one machine the
  node's way saves no network; it shows what its extra steps cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import median_pair, synth
from bench.commands import _timed
from bench.templates import _clean_node

FLOORS = {"image_push_ratio": 0.9}
MAXIMA = {"image_again_requests": 1.0, "image_again_bytes": 0.0}
PVEOCI = Path(sys.executable).with_name("pveoci")
TAG = "bench/real:1"


def run(workdir: Path, rounds: int) -> dict[str, float]:
    from tests.image.registry import Registry, missing_for_registry, skopeo
    from tests.testbed import Testbed, parts

    missing = parts.missing_for_ssh() + missing_for_registry()
    if missing:
        sys.exit("bench images needs the test bed and a registry: " + ", ".join(missing) + " (as root; "
                 "contrib/setup.sh)")
    from bench.commands import _as_installed

    _as_installed()   # the command as an installed pveoci runs: its modules compiled
    tree = synth.real_tree(workdir / "real")
    layout = _layout(workdir / "real-image", tree)
    with Registry(workdir / "bench-registry") as registry, Registry(workdir / "bench-public", auth=False) as public, \
            Testbed(workdir / "image-bed", nodes=("pve1",), lxc=True) as bed:
        auth = registry.authfile(workdir / "bench-auth.json")
        skopeo("copy", "--quiet", *registry.skopeo_options("dest-"), f"oci:{layout}:1",
               f"docker://{registry.host}/{TAG}")
        ref = f"{registry.host}/{TAG}"
        env = {"REGISTRY_AUTH_FILE": str(auth)}
        flags = ["--image", ref, "--cert-dir", str(registry.certs_dir()), "--node", "pve1"]

        def baseline() -> float:
            _clean_node(bed)
            return _by_hand(bed, registry, ref, workdir / "by-hand")

        def ours() -> float:
            _clean_node(bed)
            cache = workdir / f"image-cache-{time.monotonic_ns()}"
            try:
                return _timed([str(PVEOCI), "--root", str(cache), "template", "push", *flags],
                              bed.env(XDG_CACHE_HOME=str(cache / "xdg"), **env))
            finally:
                shutil.rmtree(cache, ignore_errors=True)

        base, cand = median_pair(baseline, ours, rounds)
        again = _again(bed, registry, workdir, flags, env)
        node = _node_way(bed, public, layout, workdir, baseline, rounds)
    size = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir()) >> 20
    print(f"images: a real image of 3 gzip layers ({size} MiB compressed; /usr/share and /etc, whiteouts in the "
          f"third)")
    print(f"  template push --image, new: skopeo copy + tar x + tar|zstd|ssh cat {base:.2f} s, pveoci {cand:.2f} s: "
          f"ratio {base / cand:.2f}x (floor {FLOORS['image_push_ratio']}x)")
    print(f"  create --image, the same image again: {again['image_again_requests']:.0f} registry request(s) "
          f"({again['image_again_blobs']:.0f} for blobs), {again['image_again_bytes']:.0f} bytes sent to the node, "
          f"{again['image_again_s']:.2f} s")
    print(f"  template push --image --pull node, new: the same baseline {node[0]:.2f} s, pveoci {node[1]:.2f} s: "
          f"ratio {node[0] / node[1]:.2f}x (no floor: on one machine the node's way saves no network)")
    return {"image_push_ratio": base / cand, **again, "image_node_push_ratio": node[0] / node[1]}


def _node_way(bed: Any, public: Any, layout: Path, workdir: Path, baseline: Any, rounds: int) -> tuple[float, float]:
    """`template push --image --pull node` of the image on a registry the node may pull from, and the baseline."""
    from tests.image.registry import skopeo

    skopeo("copy", "--quiet", *public.skopeo_options("dest-"), f"oci:{layout}:1", f"docker://{public.host}/{TAG}")
    bed.pve.grant(bed.token_id.split("!")[0], "/nodes", "Sys.AccessNetwork")
    bed.pve.oci_cert_dir = public.certs_dir()
    flags = ["--image", f"{public.host}/{TAG}", "--cert-dir", str(public.certs_dir()), "--node", "pve1",
             "--pull", "node"]

    def node() -> float:
        _clean_node(bed)
        cache = workdir / f"image-node-{time.monotonic_ns()}"
        try:
            return _timed([str(PVEOCI), "--root", str(cache), "template", "push", *flags],
                          bed.env(XDG_CACHE_HOME=str(cache / "xdg")))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    return median_pair(baseline, node, rounds)


def _again(bed: Any, registry: Any, workdir: Path, flags: list[str], env: dict[str, str]) -> dict[str, float]:
    """A create of the image, then another of it: what the second asks of the registry and sends to the node."""
    cache = workdir / "image-cache-again"
    shutil.rmtree(cache, ignore_errors=True)
    _clean_node(bed)
    environment = bed.env(XDG_CACHE_HOME=str(cache / "xdg"), **env)
    command = [str(PVEOCI), "--root", str(cache), "create", *flags]
    _timed([*command, "first"], environment)
    seen, before = len(_requests(registry)), _node_bytes(bed)
    took = _timed([*command, "second"], environment)
    asked = _requests(registry)[seen:]
    for cid in ("first", "second"):
        subprocess.run([str(PVEOCI), "--root", str(cache), "delete", "-f", cid], env=environment, check=False,
                       capture_output=True)
    return {"image_again_requests": float(len([r for r in asked if not r.startswith("GET /v2/ ")])),
            "image_again_blobs": float(len([r for r in asked if "/blobs/" in r])),
            "image_again_bytes": float(_node_bytes(bed) - before), "image_again_s": took}


def _requests(registry: Any) -> list[str]:
    text = registry.log_file.read_text(errors="replace")
    return [f"{m[1]} {m[2]} {m[3]}" for m in re.finditer(r'"(GET|HEAD) (/v2/\S*) HTTP/[\d.]+" (\d+)', text)
            if m[3] != "401"]


def _node_bytes(bed: Any) -> int:
    return sum(p.stat().st_size for p in bed.template_dir("pve1").iterdir() if p.is_file())


def _by_hand(bed: Any, registry: Any, ref: str, work: Path) -> float:
    """What a user does without pveoci: copy the image, unpack its layers (whiteouts by hand), pack and send."""
    from bench.templates import _ssh_cat
    from tests.image.registry import skopeo

    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    started = time.perf_counter()
    skopeo("copy", "--quiet", *registry.skopeo_options("src-"), f"docker://{ref}", f"oci:{work / 'oci'}:1")
    index = json.loads((work / "oci" / "index.json").read_text())
    blobs = work / "oci" / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    for layer in manifest["layers"]:
        blob = blobs / layer["digest"].removeprefix("sha256:")
        names = subprocess.run(["tar", "-tzf", str(blob)], check=True, capture_output=True, text=True).stdout
        for name in names.splitlines():   # whiteouts: what the layer deletes goes first
            head, _, leaf = name.rstrip("/").rpartition("/")
            if leaf.startswith(".wh."):
                target = rootfs / head / leaf.removeprefix(".wh.")
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink(missing_ok=True)
        subprocess.run(["tar", "-xzf", str(blob), "--numeric-owner", "--exclude=*.wh.*", "-C", str(rootfs)],
                       check=True)
    unpacked = time.perf_counter() - started
    sent = _ssh_cat(bed, rootfs, f"{bed.template_dir('pve1')}/by-hand.tar.zst")
    shutil.rmtree(work, ignore_errors=True)
    return unpacked + sent


def _layout(where: Path, tree: Path) -> Path:
    """The real image's OCI layout (made once): gzip layers of tree's etc+bin, of usr/share, and a third that
    changes and deletes files of both."""
    layout = where / "oci"
    if (where / ".done").exists():
        return layout
    shutil.rmtree(where, ignore_errors=True)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    changes = where / "changes"
    (changes / "etc").mkdir(parents=True)
    (changes / "etc" / "motd").write_text("changed by the third layer\n")
    shares = sorted(p.name for p in (tree / "usr" / "share").iterdir())
    for name in shares[:3]:
        (changes / "usr" / "share").mkdir(parents=True, exist_ok=True)
        (changes / "usr" / "share" / f".wh.{name}").write_bytes(b"")
    layers = [(tree, ["etc", "bin"]), (tree, ["usr"]), (changes, ["etc", "usr"] if shares else ["etc"])]
    descriptors, diff_ids = [], []
    for number, (source, paths) in enumerate(layers):
        tar, packed = where / f"layer{number}.tar", where / f"layer{number}.tar.gz"
        subprocess.run(["tar", "--sort=name", "--numeric-owner", "--mtime=@946684800", "-C", str(source),
                        "-cf", str(tar), *paths], check=True)
        diff_ids.append("sha256:" + _sha256(tar))
        with packed.open("wb") as out:
            subprocess.run(["gzip", "-6", "-n", "-c", str(tar)], check=True, stdout=out)
        digest = _sha256(packed)
        packed.replace(blobs / digest)
        tar.unlink()
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": f"sha256:{digest}", "size": (blobs / digest).stat().st_size})
    config = json.dumps({"architecture": _arch(), "os": "linux", "config": {"Cmd": ["/bin/app"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _put(blobs, config), "size": len(config)},
                           "layers": descriptors}).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _put(blobs, manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    (where / ".done").write_text("done")
    return layout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _put(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64")


def below_floors(results: dict[str, float]) -> list[str]:
    out = [name for name, floor in FLOORS.items() if name in results and results[name] < floor]
    return out + [name for name, most in MAXIMA.items() if name in results and results[name] > most]
