# shellcheck shell=bash
# The launch path at native speed (issue 16): launch-bound workloads, a
# native copy and hooked copies (uvm, swap; the original nvshare's hook when
# ORIGINAL_NVSHARE_DIR is set) alive side by side, measured in alternated
# pairs of rounds by py/paired.py (LAUNCH_PAIRS, 15): the median of the
# per-pair ratios hooked / native and their spread. Lower is better in
# every figure (time per kernel, per op, per token). Target: <= 1.01.
#
# ORIGINAL_NVSHARE_DIR: a directory with the original nvshare's
# libnvshare.so and nvshare-scheduler (built from a fetched copy kept out of
# this repository); its scheduler is started for the run (on its own
# socket path, /var/run/nvshare/scheduler.sock) and stopped after.

# launch_workload NAME DESCRIPTION UNIT LIMIT_S CMD... : one paired series
# of CMD, its results recorded.
launch_workload() {
  local name=$1 what=$2 unit=$3 limit=$4
  shift 4
  local cmd out=$CHECK_DIR/$name.json pairs=${LAUNCH_PAIRS:-15} variants=()
  cmd=$(printf '%q ' "$@")
  variants+=(--variant "native=native $cmd")
  local mode
  for mode in $(bench_modes); do
    variants+=(--variant "$mode=HOOK=$(printf '%q' "$HOOK") SOCK=$(printf '%q' "$SOCK") hooked $mode $name-$mode $cmd")
  done
  if [[ -n ${ORIGINAL_HOOK:-} ]]; then
    variants+=(--variant "original=LD_PRELOAD=$(printf '%q' "$ORIGINAL_HOOK") $cmd")
  fi
  echo "+ paired $name: ${#variants[@]} arguments, $pairs pairs"
  timeout -k 5 "$limit" "$PY" "$BENCH_DIR/py/paired.py" --pairs "$pairs" --out "$out" \
    --log-dir "$CHECK_DIR/$name" "${variants[@]}" || echo "paired $name ended with $?"
  [[ -s $out ]] || { LAUNCH_FAILED+=" $name"; return; }
  "$PY" - "$out" "$what" "$unit" <<'PYEOF' >"$CHECK_DIR/$name.results"
import json, sys
path, what, unit = sys.argv[1:4]
report = json.load(open(path))
base = report["variants"][report["baseline"]]
for name, v in report["variants"].items():
    if name == report["baseline"]:
        continue
    label = "the original nvshare's hook" if name == "original" else f"hooked ({name} mode)"
    target = "informational (peer)" if name == "original" else "<= 1.01"
    ratio = v.get("median_ratio")
    note = (f"median of {len(v.get('ratios', []))} per-pair ratios (rounds alternated, order swapped every pair); "
            f"p25 {v.get('p25')}, p75 {v.get('p75')}, min {v.get('min')}, max {v.get('max')}; "
            f"native median {base.get('median_value')} {unit}, this variant's {v.get('median_value')} {unit}")
    if "same_result" in v:
        note += f"; same decoded tokens as native: {v['same_result']}"
    if v.get("error") or base.get("error"):
        note += f"; error: {v.get('error') or base.get('error')}"
    samples = ",".join(f"{r:.5f}" for r in v.get("ratios", []))
    print("\t".join([f"{what}: {label} / native", "" if ratio is None else f"{ratio:.5f}", "ratio",
                     "native (no hook), same run, paired rounds", "1", target, samples, note]))
PYEOF
  local r_what r_value r_unit r_base r_bval r_target r_samples r_note
  while IFS=$'\t' read -r r_what r_value r_unit r_base r_bval r_target r_samples r_note; do
    add_result "$r_what" "$r_value" "$r_unit" "$r_base" "$r_bval" "$r_target" "$r_samples" "$r_note"
    [[ -n $r_value ]] || LAUNCH_FAILED+=" $name"
    # A hooked copy that computes something else is a failure, not a figure.
    [[ $r_note != *"same decoded tokens as native: False"* ]] || LAUNCH_FAILED+=" $name(tokens differ)"
  done <"$CHECK_DIR/$name.results"
}

# Starts the original nvshare's scheduler if ORIGINAL_NVSHARE_DIR names one;
# sets ORIGINAL_HOOK and ORIGINAL_PID.
start_original_nvshare() {
  ORIGINAL_HOOK=
  local dir=${ORIGINAL_NVSHARE_DIR:-}
  if [[ -z $dir ]]; then
    echo "ORIGINAL_NVSHARE_DIR is not set: the original nvshare is not measured"
    return
  fi
  if [[ ! -f $dir/libnvshare.so || ! -x $dir/nvshare-scheduler ]]; then
    echo "ORIGINAL_NVSHARE_DIR=$dir lacks libnvshare.so or nvshare-scheduler: not measured"
    return
  fi
  mkdir -p /var/run/nvshare
  "$dir/nvshare-scheduler" >"$CHECK_DIR/original-scheduler.log" 2>&1 &
  ORIGINAL_PID=$!
  track_pid "$ORIGINAL_PID"
  sleep 1
  if kill -0 "$ORIGINAL_PID" 2>/dev/null; then
    ORIGINAL_HOOK=$dir/libnvshare.so
  else
    echo "the original nvshare-scheduler exited: $(tail -3 "$CHECK_DIR/original-scheduler.log")"
  fi
}

# Measures: per-pair ratios hooked / native of four launch-bound workloads:
# an empty-kernel launch loop and a CUDA graph replay loop from CUDA C, a
# PyTorch small-op loop, and greedy GPT-2 decoding at batch 1 with a KV
# cache (ms per token). Target: median ratio <= 1.01 in each mode.
bench_launch_paired() {
  need_build "$BUILD/launch_worker"
  with_scheduler
  start_original_nvshare
  LAUNCH_FAILED=""
  launch_workload empty "empty-kernel launch loop (100k launches a round, CUDA C)" ns 150 \
    "$BUILD/launch_worker" empty
  launch_workload graph "CUDA graph replay (100 kernels a graph, 1000 replays a round)" ns 150 \
    "$BUILD/launch_worker" graph
  if python_has torch; then
    launch_workload small_ops "PyTorch small-op loop (20k in-place ops on 1024 floats a round)" us 240 \
      "$PY" "$BENCH_DIR/py/launch_worker.py" small_ops
  else
    LAUNCH_FAILED+=" small_ops(no torch)"
  fi
  if python_has transformers; then
    launch_workload gpt2_decode "GPT-2 greedy decoding, batch 1, KV cache, fp16 (64 tokens a round)" ms 300 \
      "$PY" "$BENCH_DIR/py/launch_worker.py" gpt2_decode
  else
    LAUNCH_FAILED+=" gpt2_decode(no transformers)"
  fi
  [[ -n ${ORIGINAL_PID:-} ]] && stop_pid "$ORIGINAL_PID"
  [[ -z $LAUNCH_FAILED ]] || fail "not measured:$LAUNCH_FAILED (see the paired logs)"
  pass "launch-bound workloads measured in ${LAUNCH_PAIRS:-15} pairs each"
}
