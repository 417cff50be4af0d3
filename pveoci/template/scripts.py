"""What pveoci runs with `sh -c` in a node's template directory: each script is one round trip, its arguments
are positional (`sh -c SCRIPT sh ARG...`, never pasted into the text), and its exit status says what happened.
"""

from __future__ import annotations

#: $1 the file to write from stdin (files the node's own tools read: world-readable).
CAT = 'umask 022 && cat > "$1"'

#: RemoteDir.place: $1 the partial file, $2 its final name, $3 the size it must have (or empty), $4 a claim to
#: record the name in (or empty). Exit 0: placed; 5: the name was there already; 4: another size (printed); 7:
#: placed (or there already) but the claim's result not written; else the reason on stderr.
PLACE = """
if [ -n "$3" ]; then
    size=$(stat -c %s -- "$1") || exit 3
    if [ "$size" != "$3" ]; then rm -f -- "$1"; printf %s "$size"; exit 4; fi
fi
ln -- "$1" "$2"; linked=$?
rm -f -- "$1"
if [ "$linked" = 0 ]; then status=0; elif [ -e "$2" ]; then status=5; else exit 6; fi
if [ -n "$4" ]; then printf %s "${2##*/}" > "$4/result" || exit 7; fi
exit "$status"
"""

#: RemoteClaim's take: $1 the claim, $2 $3 this host and process. Exit 0: ours (then LIST runs, in the claim's
#: directory's parent); 1: held by another; else why not.
TAKE = """
if ! mkdir -- "$1" 2>/dev/null; then
    [ -d "$1" ] && exit 1
    mkdir -- "$1" || exit 2
fi
printf "%s %s" "$2" "$3" > "$1/holder"
set -- "${1%/*}"
"""

#: The sweep's listing of $1: one line per hidden entry: its name, its age in seconds, "done" for a claim with a
#: result, and a claim's holder.
LIST = r"""
cd "$1" || exit 1
now=$(date +%s)
for f in .pveoci-*; do
    [ -e "$f" ] || continue
    done=""
    [ -e "$f/result" ] && done=done
    holder=$(cat -- "$f/holder" 2>/dev/null)
    changed=$(stat -c %Y -- "$f" 2>/dev/null) || continue
    printf '%s\t%s\t%s\t%s\n' "$f" "$((now - changed))" "$done" "$holder"
done
"""

#: A delta rebuilt: base data out [b|n OFFSET SIZE]... -> out, the pieces in order (GNU dd).
APPLY = r"""
base=$1 data=$2 out=$3
shift 3
umask 022
: > "$out" || exit 1
while [ $# -ge 3 ]; do
    case $1 in b) src=$base ;; n) src=$data ;; *) echo "bad piece $1" >&2; exit 2 ;; esac
    dd if="$src" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none >> "$out" || exit 1
    shift 3
done
"""
