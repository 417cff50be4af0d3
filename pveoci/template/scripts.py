"""What pveoci runs with `sh -c` in a node's template directory: each script is one round trip, its arguments
are positional (`sh -c SCRIPT sh ARG...`, never pasted into the text), and its exit status says what happened.
"""

from __future__ import annotations

#: $1 the file to write from stdin (files the node's own tools read: world-readable).
CAT = 'umask 022 && cat > "$1"'

#: What the scripts that touch a claim share (node_claim.py says how a claim works). mine CLAIM HOLDER: the
#: claim is still the one HOLDER took. record CLAIM NAME: its result, written whole or not at all. leave CLAIM:
#: the claim goes once it has its result and no waiter is left in it. gone CLAIM: it goes now, renamed away
#: first, so that nobody can still join it while it is being removed.
CLAIM_FUNCTIONS = r"""
mine() { [ "$(cat -- "$1/holder" 2>/dev/null)" = "$2" ]; }
record() { printf %s "$2" > "$1/result.new" && mv -f -- "$1/result.new" "$1/result"; }
leave() {
    [ -e "$1/result" ] || return 0
    for w in "$1"/w.*; do [ -e "$w" ] && return 0; done
    gone "$1"
}
gone() { mv -T -- "$1" "$1.gone.$$" 2>/dev/null && rm -rf -- "$1.gone.$$"; }
"""

#: RemoteDir.place: $1 the partial file, $2 its final name, $3 the size it must have (or empty), $4 a claim to
#: record the name in (or empty) and $5 its holder. Exit 0: placed; 5: the name was there already; 7 and 8: the
#: same, but the claim's result not written (the claim is no longer this holder's); 4: another size (printed);
#: else the reason on stderr.
PLACE = CLAIM_FUNCTIONS + """
if [ -n "$3" ]; then
    size=$(stat -c %s -- "$1") || exit 3
    if [ "$size" != "$3" ]; then rm -f -- "$1"; printf %s "$size"; exit 4; fi
fi
ln -- "$1" "$2"; linked=$?
rm -f -- "$1"
if [ "$linked" = 0 ]; then status=0; elif [ -e "$2" ]; then status=5; else exit 6; fi
if [ -n "$4" ]; then
    if mine "$4" "$5" && record "$4" "${2##*/}"; then leave "$4"; elif [ "$status" = 0 ]; then exit 7; else exit 8; fi
fi
exit "$status"
"""

#: A claim taken: $1 the claim, $2 its holder (host, process, token), $3 the entry a waiter keeps in it. Exit 0:
#: ours (what follows runs in the claim's parent directory: $1 is that); 1: held by another, and this caller
#: waits in it; else the reason on stderr.
TAKE = """
tries=0
until mkdir -- "$1" 2>/dev/null; do
    if [ -d "$1" ]; then
        mkdir -- "$1/$3" 2>/dev/null && exit 1
        if [ -d "$1" ]; then mkdir -- "$1/$3" && exit 1; exit 2; fi
    else
        mkdir -- "$1" && break
        exit 2
    fi
    tries=$((tries + 1))   # it went between the two mkdirs: again
    [ "$tries" -lt 20 ] || { echo "$1 keeps coming and going" >&2; exit 2; }
done
printf %s "$2" > "$1/holder"
set -- "${1%/*}"
"""

#: Taken over: as TAKE, after removing the claim this caller waited in ($3 still in it), or one whose result is
#: $4, a name the caller read and found missing from the storage.
TAKE_OVER = CLAIM_FUNCTIONS + """
if [ -d "$1/$3" ] || { [ -n "$4" ] && [ "$(cat -- "$1/result" 2>/dev/null)" = "$4" ]; }; then gone "$1"; fi
""" + TAKE

#: A waiter's look at claim $1 it waits in as $2. Exit 0: its result (printed), and the waiter has left it; 1:
#: still held (the seconds since its holder was last heard of, then the holder, printed); 3: gone (given up,
#: taken over, swept).
POLL = CLAIM_FUNCTIONS + """
[ -d "$1/$2" ] || exit 3
if [ -e "$1/result" ]; then
    cat -- "$1/result" || exit 3
    rmdir -- "$1/$2"
    leave "$1"
    exit 0
fi
changed=$(stat -c %Y -- "$1") || exit 3
echo "$(($(date +%s) - changed)) $(cat -- "$1/holder" 2>/dev/null)"
exit 1
"""

#: The holder done ($1 the claim, $2 its holder, $3 the template's name), or giving up ($3 empty: the claim goes,
#: and a waiter takes over); a waiter giving up waiting ($2 empty, $3 its entry).
RELEASE = CLAIM_FUNCTIONS + """
if [ -z "$2" ]; then rmdir -- "$1/$3" 2>/dev/null; leave "$1"; exit 0; fi
mine "$1" "$2" || exit 0
if [ -n "$3" ]; then record "$1" "$3" && leave "$1"; else gone "$1"; fi
"""

#: The sweep's listing of $1: one line per hidden entry: its name, its age in seconds, "done" for a claim with a
#: result, a claim's holder, and the entries of the waiters in it.
LIST = r"""
cd "$1" || exit 1
now=$(date +%s)
for f in .pveoci-*; do
    [ -e "$f" ] || continue
    done=""
    [ -e "$f/result" ] && done=done
    holder=$(cat -- "$f/holder" 2>/dev/null)
    waiters=""
    if [ -d "$f" ]; then for w in "$f"/w.*; do [ -e "$w" ] && waiters="$waiters ${w##*/}"; done; fi
    changed=$(stat -c %Y -- "$f" 2>/dev/null) || continue
    printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$((now - changed))" "$done" "$holder" "${waiters# }"
done
"""

#: The sweep's removal of the entries $2... of directory $1, each renamed away first (as a claim goes).
REMOVE = CLAIM_FUNCTIONS + """
cd "$1" || exit 1
shift
for f; do gone "$f"; done
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
