#!/usr/bin/env bash
# CPU seconds of one command per method, this checkout against another, alternating so that both
# see the same machine load: `simu-bench run --methods M --seeds 0,1,2` on the embedded target.
#   bash scripts/seed_cost.sh OTHER_CHECKOUT [METHODS] [SEEDS]
# OTHER_CHECKOUT needs its own venv in OTHER_CHECKOUT/.venv. Prints one line per command:
# checkout, method, user and system CPU seconds, wall seconds. This checkout runs with --workers 1,
# so that its CPU seconds are one process's, as the other's.
set -euo pipefail
cd "$(dirname "$0")/.."
other=$(cd "$1" && pwd)
methods=${2:-fo_graddiff,so_graddiff,simu}
seeds=${3:-0,1,2}
work=$(mktemp -d)
for method in ${methods//,/ }; do
  for side in other this; do
    if [ "$side" = other ]; then exe="$other/.venv/bin/simu-bench"; extra=(); else exe=.venv/bin/simu-bench; extra=(--workers 1); fi
    /usr/bin/time -f "$side $method user %U sys %S wall %e" -o "$work/time" \
      "$exe" run --methods "$method" --seeds "$seeds" --out "$work/$side-$method" --quiet "${extra[@]}" > /dev/null 2>&1
    cat "$work/time"
  done
done
rm -rf "$work"
