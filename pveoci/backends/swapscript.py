"""The node's half of an image update (runtime.swap): a container's root filesystem swapped for a template's,
in place, in steps that a killed update can finish or undo.

`sh -c SCRIPT sh ACTION VMID PID TEMPLATE OWNER USERNS KEEP NEED`, run as root on the node (POSIX sh, coreutils,
tar, zstd: what every Proxmox VE node has). The container's root is `pct mount`'s (a stopped container) or
/proc/PID/root (a running one's init, for `commit`). Everything goes through one directory at the root,
`.pveoci-update`, whose `state` file says how far a swap got:

- `swap`: the template is unpacked into `.pveoci-update/next` (`extract`; as the container's own root when
  USERNS gives its id map, as Proxmox unpacks a template), then every entry of the root moves into
  `.pveoci-update/prev` (`out`), then every entry of `next` into the root (`in`), then `swapped`. Each move is a
  rename: no file is copied, the old tree is kept whole, inodes and all, until `commit`.
- `back`: the root as it was before the swap, from any state (an unfinished extract is just removed).
- `commit`: the old tree removed; nothing left of the update.
- `check`: that the template is on the node and the root disk has room for it (NEED bytes) beside the old tree;
  nothing changes (run before the process is stopped: a running container's root is /proc/PID/root).
- `state`: the state, `none` without an update.
`$u/template` names the template a swap is to (the file's name): with the container's config, it tells any
machine whether an interrupted update is to be finished (`commit`) or undone (`back`).

KEEP (one path a line, relative to the root) are the container's mount points and the directories whose content
an update keeps (the image's volumes, --keep): those the old tree has stay where they are with what is in them
(the new image's entry there is dropped), and so do the directories that lead to them (what else is in those
moves); those it lacks come from the new image. A swap writes the list it kept to `$u/keep`, for the later
steps. NEED: bytes the unpacked template takes, checked against the root's free space first. Signals are ignored: a
workstation that goes away mid-way (its SSH session closed) does not stop a step half-way, and a lock
(flock on /run/lock/pveoci-swap-VMID) makes the next step wait for it. The last line
printed is `ok STATE NAME`, or `error WHY` (exit 1), or `busy STATE NAME` (exit 4) for a `swap` over an update that did
not finish.
"""

from __future__ import annotations

SCRIPT = r"""
trap '' HUP INT TERM PIPE
action=$1 vmid=$2 pid=$3 template=$4 owner=$5 userns=$6 keep=$7 need=$8
mounted=
# One step at a time per container: a step whose workstation went away runs on to its end, and the next one (a
# recovery) waits for it rather than moving files beside it.
# (A lock file as Proxmox keeps its own in /run/lock/lxc: empty, on tmpfs.)
exec 9>>"/run/lock/pveoci-swap-$vmid" && flock -w 900 9 || {
  printf 'error cannot lock CT %s for the update\n' "$vmid"; exit 1; }
fail() { [ -n "$mounted" ] && pct unmount "$vmid" >/dev/null 2>&1; printf 'error %s\n' "$1"; exit 1; }
if [ "$pid" != 0 ]; then
  where=/proc/$pid/root
else
  said=$(pct mount "$vmid" 2>&1)
  case $said in *"locked (mounted)"*) pct unmount "$vmid" >/dev/null 2>&1; said=$(pct mount "$vmid" 2>&1) ;; esac
  where=$(printf '%s\n' "$said" | sed -n "s/^mounted CT [0-9]* in '\(.*\)'$/\1/p")
  [ -n "$where" ] || fail "pct mount $vmid: $(printf '%s' "$said" | tail -n 1)"
  mounted=1
fi
u=$where/.pveoci-update
state=none
[ -d "$u" ] && { state=$(cat "$u/state" 2>/dev/null) || state=extract; }
# What a swap keeps is what it found in the old tree (written at its start): a later step keeps the same.
[ "$action" != swap ] && [ -f "$u/keep" ] && keep=$(cat "$u/keep")
mark() { printf '%s\n' "$1" > "$u/state.new" && mv -f "$u/state.new" "$u/state" || fail "cannot write $u/state"; }
kept() {
  printf '%s\n' "$keep" | grep -qxF -e "$1"
}
leads() {
  while IFS= read -r k; do case $k in "$1"/*) return 0 ;; esac; done <<EOF
$keep
EOF
  return 1
}
# Move every entry of $1 into $2 (REL: their path from the root), but mount points and the staging directory;
# a directory on the way to a mount point, or already in $2, has its entries moved instead.
move_all() {
  local src="$1" dst="$2" rel="$3" e name
  for e in "$src"/* "$src"/.[!.]* "$src"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    name=${e##*/}
    if [ -z "$rel" ]; then case $name in .pveoci-update|lost+found) continue ;; esac; fi
    kept "$rel$name" && continue
    if [ -e "$dst/$name" ] || [ -L "$dst/$name" ] || leads "$rel$name"; then
      if [ -d "$e" ] && [ ! -L "$e" ]; then
        [ -d "$dst/$name" ] && [ ! -L "$dst/$name" ] || mkdir -p -- "$dst/$name" || fail "cannot make $dst/$name"
        move_all "$e" "$dst/$name" "$rel$name/"
      fi
      continue
    fi
    mv -f -T -- "$e" "$dst/$name" || fail "cannot move $rel$name"
  done
}
back() {
  case $state in
    none) ;;
    extract) ;;
    out) move_all "$u/prev" "$where" "" ;;
    *) mkdir -p "$u/new" && move_all "$where" "$u/new" "" && move_all "$u/prev" "$where" "" ;;
  esac
  rm -rf -- "$u" || fail "cannot remove $u"
}
# The template is there and the root disk has room for it beside the old tree.
fits() {
  [ -f "$template" ] || fail "no template $template on the node"
  free=$(df -P -k "$where" | awk 'NR == 2 { print $4 }')
  [ -n "$free" ] && [ $((free * 1024)) -lt "$need" ] && \
    fail "the root disk has $((free / 1024)) MiB free; the new image needs $((need / 1048576 + 1)) MiB"
}
case $action in
state) ;;
check) fits ;;
back) back; state=none ;;
commit)
  case $state in none|swapped) rm -rf -- "$u" || fail "cannot remove $u"; state=none ;;
  *) fail "the update is $state, not swapped" ;; esac ;;
swap)
  case $state in
    none) ;;
    extract) rm -rf -- "$u" ;;
    *) [ -n "$mounted" ] && pct unmount "$vmid" >/dev/null 2>&1
       printf 'busy %s %s\n' "$state" "$(cat "$u/template" 2>/dev/null)"; exit 4 ;;
  esac
  fits
  mkdir -m 700 "$u" && mkdir "$u/next" && chown "$owner" "$u" "$u/next" || fail "cannot make $u"
  printf '%s\n' "${template##*/}" > "$u/template" || fail "cannot write $u/template"
  keep=$(printf '%s\n' "$keep" | while IFS= read -r k; do
    if [ -n "$k" ] && { [ -e "$where/$k" ] || [ -L "$where/$k" ]; }; then printf '%s\n' "$k"; fi; done)
  printf '%s\n' "$keep" > "$u/keep" || fail "cannot write $u/keep"
  state=extract; mark extract
  case $template in
    *.zst) unpack="zstd -q -d -c" ;; *.gz) unpack="gzip -d -c" ;; *.xz) unpack="xz -d -c" ;; *) unpack=cat ;;
  esac
  # As Proxmox unpacks a template (PVE::LXC::Create): owners as numbers, mapped for an unprivileged container.
  set --
  for m in $userns; do set -- "$@" -m "$m"; done
  [ $# -gt 0 ] && set -- lxc-usernsexec "$@" --
  if ! err=$($unpack "$template" | "$@" tar -x -f - -p --sparse --numeric-owner --acls --xattrs \
      --xattrs-include='user.*' --xattrs-include=security.capability --warning=no-file-ignored \
      --warning=no-xattr-write --one-file-system -C "$u/next" --anchored --exclude './dev/*' 2>&1); then
    rm -rf -- "$u"
    fail "cannot unpack $template: $(printf '%s' "$err" | tail -n 1)"
  fi
  state=out; mark out
  mkdir -p "$u/prev" || fail "cannot make $u/prev"
  move_all "$where" "$u/prev" ""
  state=in; mark in
  move_all "$u/next" "$where" ""
  rm -rf -- "$u/next"
  state=swapped; mark swapped
  ;;
*) fail "unknown action $action" ;;
esac
if [ -n "$mounted" ]; then
  said=$(pct unmount "$vmid" 2>&1) || { printf 'error pct unmount %s: %s\n' "$vmid" "$said"; exit 1; }
fi
name=
[ -f "$u/template" ] && name=$(cat "$u/template")
printf 'ok %s %s\n' "$state" "$name"
"""
