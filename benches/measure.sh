# Sourced by the bench scripts: `measure LABEL COMMAND...` runs COMMAND $runs times
# (removing "$work/out" before each) and prints the median wall time and the largest
# peak RSS. Needs $runs and $work set, and GNU time at /usr/bin/time.
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
