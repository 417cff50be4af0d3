"""The node's half of `--pull node` (runtime/nodeimage.py): an image that Proxmox unpacked into a stopped
container of pveoci's own (created from the OCI archive the node pulled) is described, and packed into pveoci's
template.

`sh -c SCRIPT sh VMID OWNER USERNS PARTIAL LIKE DIGESTLEN ARCHIVE DIGEST`, run as root on the node (POSIX sh,
coreutils, find, tar, zstd: what every Proxmox VE node has). The container's root is where `pct mount` puts it.
ARCHIVE (the OCI archive the container was made from), when given, must hold the image whose config is DIGEST
first (what Proxmox unpacks; a config's digest survives skopeo's conversion of a Docker manifest to OCI, the
manifest's does not), checked before anything else. Then it prints sections (`NAME LENGTH`, a newline, LENGTH bytes):

- `listing`: every entry of the tree (`find -printf '%y %m %s %i\\0%P\\0%l\\0'`: type, permissions, size,
  inode, path, symlink target), what image/nodetree.py answers a create's questions from;
- `file etc/passwd`, `file etc/group`: those files, when they are regular files at that very path (1 MiB at most);
- with PARTIAL (a hidden path in the template directory): pveoci's init (read from stdin) goes into the tree at
  /.pveoci/init (owned by the container's root, OWNER as the node sees it), /.pveoci/run is made, and the tree is
  packed as Proxmox unpacks a template (`./dev/*` left out; as the container's own root when USERNS gives its id
  map, so owners are the image's), compressed with zstd into PARTIAL, then linked into place beside it as
  pveoci-<sha256 of the file, DIGESTLEN hex>-<LIKE>.tar.zst: `made NAME SIZE`.

The last line is `ok`, or `error WHY` (exit 1). The container is unmounted whatever happens; it is the caller's to
destroy. Nothing of the image is run: its tree is only read.
"""

from __future__ import annotations

from pveoci import errors
from pveoci.models import UnpackedImage

SCRIPT = r"""
vmid=$1 owner=$2 userns=$3 partial=$4 like=$5 digestlen=$6 archive=$7 digest=$8
if [ -n "$archive" ]; then
  first() { grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1; }
  held=$(tar -xOf "$archive" --wildcards '*index.json' 2>/dev/null | first)
  held=$(tar -xOf "$archive" --wildcards "*blobs/sha256/${held#sha256:}" 2>/dev/null | first)
  [ "$held" = "$digest" ] || {
    printf 'error the pulled archive holds the image %s, not %s\n' "${held:-(none)}" "$digest"; exit 1; }
fi
tmp=$(mktemp -d) || { echo "error cannot make a temporary directory"; exit 1; }
mounted=
cleanup() {
  [ -n "$mounted" ] && pct unmount "$vmid" >/dev/null 2>&1
  rm -rf -- "$tmp"
  [ -z "$partial" ] || rm -f -- "$partial"
}
trap cleanup EXIT
fail() { printf 'error %s\n' "$1"; exit 1; }
said=$(pct mount "$vmid" 2>&1)
case $said in *"locked (mounted)"*) pct unmount "$vmid" >/dev/null 2>&1; said=$(pct mount "$vmid" 2>&1) ;; esac
root=$(printf '%s\n' "$said" | sed -n "s/^mounted CT [0-9]* in '\(.*\)'$/\1/p")
[ -n "$root" ] || fail "pct mount $vmid: $(printf '%s' "$said" | tail -n 1)"
mounted=1
section() { printf '%s %s\n' "$1" "$(wc -c < "$2")"; cat -- "$2"; }
(cd "$root" && find . -xdev -printf '%y %m %s %i\0%P\0%l\0') > "$tmp/listing" || fail "cannot list the image's tree"
section listing "$tmp/listing"
for f in etc/passwd etc/group; do
  [ -L "$root/etc" ] || [ -L "$root/$f" ] || [ ! -f "$root/$f" ] && continue
  head -c 1048577 -- "$root/$f" > "$tmp/file" || fail "cannot read the image's /$f"
  section "file $f" "$tmp/file"
done
if [ -n "$partial" ]; then
  rm -rf -- "$root/.pveoci" && mkdir -p -- "$root/.pveoci/run" && cat > "$root/.pveoci/init" \
    && chmod 0755 -- "$root/.pveoci" "$root/.pveoci/init" && chmod 0711 -- "$root/.pveoci/run" \
    && chown "$owner" -- "$root/.pveoci" "$root/.pveoci/init" "$root/.pveoci/run" \
    || fail "cannot put pveoci's init in the tree"
  set --
  for m in $userns; do set -- "$@" -m "$m"; done
  { if [ -n "$userns" ]; then
      lxc-usernsexec "$@" -- tar -C "$root" --sort=name --numeric-owner --xattrs --xattrs-include='*' \
        --exclude='./dev/*' --exclude=./lost+found -cf - .
    else
      tar -C "$root" --sort=name --numeric-owner --xattrs --xattrs-include='*' \
        --exclude='./dev/*' --exclude=./lost+found -cf - .
    fi; echo $? > "$tmp/tar"; } | zstd -q -T0 -3 > "$partial" || fail "cannot compress the template"
  [ "$(cat "$tmp/tar")" = 0 ] || fail "tar could not pack the image's tree"
  sum=$(sha256sum < "$partial" | cut -c1-"$digestlen") || fail "cannot hash the template"
  name="pveoci-$sum-$like.tar.zst"
  size=$(wc -c < "$partial")
  ln -- "$partial" "${partial%/*}/$name" 2>/dev/null || [ -f "${partial%/*}/$name" ] || fail "cannot place $name"
  printf 'made %s %s\n' "$name" "$size"
fi
echo ok
"""


def parse(status: int, out: bytes, err: bytes, what: str) -> UnpackedImage:
    """The script's sections and last line as an UnpackedImage; PveociError with its words when it failed."""
    sections: dict[str, bytes] = {}
    lines: list[str] = []
    at = 0
    while at < len(out):
        end = out.find(b"\n", at)
        end = len(out) if end < 0 else end
        line = out[at:end].decode("utf-8", "replace")
        at = end + 1
        head, _, length = line.rpartition(" ")
        if (head == "listing" or head.startswith("file ")) and length.isdigit():
            sections[head] = out[at:at + int(length)]
            at += int(length)
        else:
            lines.append(line)
    last = lines[-1] if lines else ""
    if status != 0 or last != "ok" or "listing" not in sections:
        why = last.removeprefix("error ") if last.startswith("error ") else (
            err.decode("utf-8", "replace").strip().splitlines() or [f"exit {status}"])[-1]
        raise errors.PveociError(f"cannot read the image Proxmox unpacked in {what}: {why}")
    made = next((line.split() for line in lines if line.startswith("made ")), [])
    files = {name.removeprefix("file "): data for name, data in sections.items() if name.startswith("file ")}
    return UnpackedImage(sections["listing"], files, made[1] if len(made) == 3 else "",
                         int(made[2]) if len(made) == 3 and made[2].isdigit() else 0)
