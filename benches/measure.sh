# Sourced by the bench scripts from the repository root, with $runs set. It sets $bin
# (ATTNMAP_BIN, else the release build) and $work (a temporary folder removed on exit),
# checks that both the binary and GNU time (/usr/bin/time) are there, and defines
# `measure LABEL COMMAND...`: it runs COMMAND $runs times (removing "$work/out" before
# each) and prints the median wall time and the largest peak RSS.
bin=${ATTNMAP_BIN:-target/release/attnmap}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; Debian package 'time')" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() { # label, command...
  local label=$1; shift
  local times=() peak=0
  for _ in $(seq "$runs"); do
    rm -rf "$work/out"
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r wall rss <"$work/t"
    times+=("$wall")
    [ "$rss" -gt "$peak" ] && peak=$rss
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-48s median %7.3f s   peak RSS %7.1f MiB   (%d runs)\n' "$label" "$median" "$(echo "$peak / 1024" | bc -l)" "$runs"
}
