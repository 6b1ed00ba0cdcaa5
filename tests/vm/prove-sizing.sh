#!/usr/bin/env bash
# Prove `devalloc size` tight on the full kernel's CMA heap (issue 14, part 3).
#
# Usage: tests/vm/prove-sizing.sh [--boots N] [SCENARIO...]
#
# For each scenario (default: the three shipped in examples/scenarios/): compute
# `devalloc size --json`, boot the full kernel N times (default 2) with cma=<answer> and once with
# cma=<answer - 2 MiB> (one CMA granule less: cma= is rounded up to 2 MiB), and run
# tests/kernel/test_sizing.py there (it allocates every CMA buffer of the worst combination from
# /dev/dma_heap/reserved and holds them: they must fit at the answer, and fail with devalloc's
# CmaExhaustedError one granule below). Prints one line per boot and a summary table with
# devalloc's number beside the naive w x h x bpp x count estimate; exits non-zero when a boot
# does not give what it should.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
boots=2
if [ "${1:-}" = --boots ]; then boots=$2; shift 2; fi
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(examples/scenarios/hd-encode.toml examples/scenarios/small-panel.toml examples/scenarios/video-call.toml)
python=${DEVALLOC_VM_PYTHON:-$repo/.venv/bin/python}
# The VM launcher (a stand-in in tests/test_sizing_prove.py, which checks this script's verdicts).
runner=${DEVALLOC_PROVE_RUNNER:-$here/run.sh}
work=$(mktemp -d /tmp/devalloc-prove-sizing.XXXXXX)
trap 'rm -rf "$work"' EXIT

status=0
summary=()
for scenario in "${scenarios[@]}"; do
  "$python" -c "import sys; from devalloc.cli import main; sys.exit(main())" size --json "$scenario" > "$work/size.json"
  read -r answer naive classes < <("$python" - "$work/size.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
worst = next(c for c in data["combinations"] if c["name"] == data["worst"])
classes = ",".join(f"{k}={v}" for k, v in data["classes"].items())
print(data["cma_bytes"], worst["naive_classes"].get("contiguous", 0), classes)
PY
)
  mib=$((answer >> 20))
  results=""
  for run in $(seq 1 "$boots") tight; do
    if [ "$run" = tight ]; then cma=$((mib - 2)); want=exhausted; else cma=$mib; want=fit; fi
    report="$work/report-$run.xml"
    for try in 1 2; do  # a second boot only when the first gave no report (the VM itself failed)
      rm -f "$report"
      rc=0
      DEVALLOC_VM_REPORT=$report "$runner" --kernel full --timeout 300 \
        --append "cma=${cma}M devalloc_sizing=$scenario" -- -m kernel tests/kernel/test_sizing.py \
        > "$work/vm.log" 2>&1 || rc=$?
      [ ! -f "$report" ] || break
      echo "prove-sizing: $scenario cma=${cma}M: the VM gave no report (try $try, run.sh exit $rc):"
      grep -E "panic|Oops|FAILED" "$work/vm.log" | head -n 5 || true
    done
    line=$("$python" - "$report" "$want" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("no-report"); sys.exit()
case = next(iter(root.iter("testcase")), None)
props = {p.get("name"): p.get("value") for p in root.iter("property")}
failed = case is None or any(case.find(t) is not None for t in ("failure", "error", "skipped"))
got = props.get("expect", "?")
ok = not failed and got == sys.argv[2]
lat = props.get("alloc_total_ms", "-")
print(f"{'ok' if ok else 'FAILED'} {got} CmaTotal={props.get('cma_total')} taken={props.get('cma_taken_at_boot')} alloc_ms={lat} median_ms={props.get('alloc_median_ms', '-')} {props.get('error', '')}")
PY
)
    echo "prove-sizing: $scenario cma=${cma}M ($want): $line (run.sh exit $rc)"
    case "$line" in ok*) ;; *) status=1; tail -n 30 "$work/vm.log" ;; esac
    results="$results ${cma}M:${line%% *}"
  done
  summary+=("$scenario: devalloc cma_bytes=$answer (cma=${mib}M) naive contiguous w*h*bpp*count=$naive classes=$classes boots:$results")
done
echo
echo "prove-sizing summary (full kernel, CMA heap 'reserved'):"
printf '  %s\n' "${summary[@]}"
exit "$status"
