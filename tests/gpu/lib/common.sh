# shellcheck shell=bash
# Helpers shared by the GPU suite (tests/gpu/run.sh) and the GPU benchmarks
# (benches/gpu/run.sh). Sourced, never run.
#
# Layout of a run:
#   $WORK            a private temporary directory (short path: sockets live here)
#   $WORK/build      compiled CUDA programs
#   $OUTDIR          only the log and the JSON summary (few files come back)
#
# Every process these helpers start is waited for by its PID; the scheduler
# is stopped by PID on exit. Nothing is killed by name.

GIB=1073741824

# Paths. The artifacts are built on a machine with Rust and carried here.
GPU_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTS_GPU_DIR=$(cd "$GPU_LIB_DIR/.." && pwd)
REPO=$(cd "$GPU_LIB_DIR/../../.." && pwd)
ART=${NVSHARE_ARTIFACTS:-$REPO/target/release}
HOOK=$ART/libnvshare.so
SCHED=$ART/nvshare-scheduler
CTL=$ART/nvshare-ctl
PY=${PYTHON:-python3}
REPORT_PY=$GPU_LIB_DIR/report.py
RESULTS_PY=$GPU_LIB_DIR/results.py
STATUS_PY=$GPU_LIB_DIR/status.py
export GIB GPU_LIB_DIR TESTS_GPU_DIR REPO ART HOOK SCHED CTL PY REPORT_PY RESULTS_PY STATUS_PY

# `native CMD...` and `hooked MODE NAME CMD...` are executables (so timeout,
# setsid and env can run them): see lib/bin.
chmod +x "$GPU_LIB_DIR/bin/native" "$GPU_LIB_DIR/bin/hooked" 2>/dev/null || true
PATH=$GPU_LIB_DIR/bin:$PATH
export PATH

now() { date +%s.%N; }

# elapsed START -> seconds since START with millisecond precision.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- scheduler

# start_scheduler SOCK LOGFILE [FLAGS...] : starts the daemon in the
# background, sets SCHED_PID and waits (10 s at most) for its socket. The
# daemon lists only the GPUs programs attach (SCHED_NVML_LIBRARY=none by
# default): with NVML it would list every GPU of the machine, idle ones
# too, and the checks read the first GPU of the status as the one in use.
start_scheduler() {
  local sock=$1 log=$2
  shift 2
  rm -f "$sock"
  native env NO_COLOR=1 NVSHARE_LOG="${SCHED_LOG_FILTER:-info}" \
    NVSHARE_NVML_LIBRARY="${SCHED_NVML_LIBRARY:-none}" \
    "$SCHED" --socket "$sock" "$@" >"$log" 2>&1 </dev/null &
  SCHED_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -S $sock ]] && return 0
    if ! kill -0 "$SCHED_PID" 2>/dev/null; then
      echo "scheduler exited before its socket appeared; its log:"
      tail -n 40 "$log"
      wait "$SCHED_PID" 2>/dev/null
      SCHED_PID=
      return 1
    fi
    sleep 0.1
  done
  echo "scheduler socket $sock did not appear within 10 s"
  return 1
}

# stop_pid PID : TERM, then KILL after 5 s; reaps it.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

stop_scheduler() {
  stop_pid "${SCHED_PID:-}"
  SCHED_PID=
}

# ctl_status SOCK OUTFILE : `nvshare-ctl --socket SOCK status --json` into
# OUTFILE (or `status --socket SOCK --json`, for a ctl whose --socket is an
# option of the subcommand only).
ctl_status() {
  native timeout -k 2 10 "$CTL" --socket "$1" status --json >"$2" 2>"$2.err" ||
    native timeout -k 2 10 "$CTL" status --socket "$1" --json >"$2" 2>>"$2.err"
}

# ---------------------------------------------------------------- processes

# kill_session SID SIGNAL : signals every process of session SID (the
# session run_limited made; `timeout` moves its child to a process group of
# its own, so a group kill would miss it).
kill_session() {
  local sid=$1 signal=$2 stat_file stat fields pids=()
  for stat_file in /proc/[0-9]*/stat; do
    stat=$(<"$stat_file") 2>/dev/null || continue
    # After "pid (comm) ": state ppid pgrp session ...
    read -r -a fields <<<"${stat##*) }"
    [[ ${fields[3]:-} == "$sid" ]] && pids+=("${stat%% *}")
  done
  ((${#pids[@]})) && kill -"$signal" "${pids[@]}" 2>/dev/null
  kill -"$signal" "$sid" 2>/dev/null
  return 0
}

# run_limited LIMIT_S OUTFILE CMD... : runs CMD in its own session with
# output to OUTFILE; after LIMIT_S kills the whole session (every process the
# command started) and returns 124. Otherwise returns CMD's status.
run_limited() {
  local limit=$1 out=$2
  shift 2
  setsid "$@" >"$out" 2>&1 </dev/null &
  local pid=$! deadline
  deadline=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.1f", n + l }')
  while kill -0 "$pid" 2>/dev/null; do
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n >= d) }'; then
      kill_session "$pid" TERM
      sleep 3
      kill_session "$pid" KILL
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 0.2
  done
  wait "$pid"
}

# capped FILE [HEAD TAIL] : the file, at most its first HEAD (80) and last
# TAIL (250) lines.
capped() {
  local head=${2:-80} tail=${3:-250} n
  n=$(wc -l <"$1")
  if ((n <= head + tail)); then
    cat "$1"
  else
    head -n "$head" "$1"
    echo "... [$((n - head - tail)) lines cut] ..."
    tail -n "$tail" "$1"
  fi
}

# result_of FILE KEY : KEY's value on the last `RESULT k=v ...` line of FILE.
result_of() { "$PY" "$RESULTS_PY" get "$1" "$2"; }

# ---------------------------------------------------------------- GPU facts

# The GPU whose memory the single-GPU checks and benchmarks watch: TEST_GPU,
# a UUID or an nvidia-smi index (default 0). `tests/gpu/run.sh --gpu N` sets
# it to GPU N's UUID and makes that GPU the only one its programs see
# (CUDA_VISIBLE_DEVICES), so suites on two GPUs can run side by side.
TEST_GPU=${TEST_GPU:-0}
export TEST_GPU

# smi_query FIELD [GPU] : one nvidia-smi field of GPU (default TEST_GPU).
smi_query() {
  nvidia-smi --query-gpu="$1" --format=csv,noheader,nounits -i "${2:-$TEST_GPU}" 2>/dev/null | head -n1 | tr -d ' '
}

# gpu_count : how many GPUs nvidia-smi lists (0 if none).
gpu_count() { nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null | grep -c '^GPU-'; }

# gpu_uuid INDEX : the UUID of GPU INDEX in nvidia-smi's (PCI bus) order.
gpu_uuid() { smi_query uuid "$1"; }

# gpu_free_gib [GPU] : free memory of the test GPU (or GPU) in GiB (integer).
gpu_free_gib() {
  local mib
  mib=$(smi_query memory.free "${1:-}")
  [[ $mib =~ ^[0-9]+$ ]] || mib=0
  echo $((mib / 1024))
}

# gpu_total_mib : memory of the test GPU in MiB (0 if unknown).
gpu_total_mib() {
  local mib
  mib=$(smi_query memory.total)
  [[ $mib =~ ^[0-9]+$ ]] || mib=0
  echo "$mib"
}

# gpu_used_mib [GPU] : used memory of the test GPU (or GPU) in MiB.
gpu_used_mib() { smi_query memory.used "${1:-}"; }

# write_facts FILE : device, driver, kernel, CUDA and library versions as JSON.
write_facts() { "$PY" "$REPORT_PY" facts >"$1"; }

# check_artifacts : the release artifacts exist; prints what is missing.
check_artifacts() {
  local f missing=0
  for f in "$HOOK" "$SCHED" "$CTL"; do
    if [[ ! -e $f ]]; then
      echo "missing artifact: $f (build with cargo build --release here and carry target/release)"
      missing=1
    fi
  done
  return $missing
}

# ---------------------------------------------------------------- building

# cuda_arch : the compute capability of the test GPU as NN (e.g. 90), or empty.
cuda_arch() { smi_query compute_cap | tr -d '.'; }

NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}

# nvcc_build OUT SRC [EXTRA...] : compiles SRC for this GPU (falls back to
# -arch=native, then to nvcc's default target).
nvcc_build() {
  local out=$1 src=$2
  shift 2
  local arch
  arch=$(cuda_arch)
  if [[ -n $arch ]] && "$NVCC" -O2 -std=c++17 -arch="sm_$arch" -o "$out" "$src" "$@"; then
    return 0
  fi
  "$NVCC" -O2 -std=c++17 -arch=native -o "$out" "$src" "$@" && return 0
  "$NVCC" -O2 -std=c++17 -o "$out" "$src" "$@"
}

# nvcc_ptx OUT SRC : PTX for this GPU's compute capability.
nvcc_ptx() {
  local arch
  arch=$(cuda_arch)
  if [[ -n $arch ]] && "$NVCC" -ptx -arch="compute_$arch" -o "$1" "$2"; then
    return 0
  fi
  "$NVCC" -ptx -o "$1" "$2"
}

# libcuda_link_args : how to link a program against the driver API: the
# toolkit's stub if nvcc finds one, else the installed libcuda.so.1.
libcuda_link_args() {
  local probe=$WORK/build/.probe
  mkdir -p "$WORK/build"
  printf '#include <cuda.h>\nint main(){return (int)cuInit(0);}\n' >"$probe.cu"
  if "$NVCC" -o "$probe" "$probe.cu" -lcuda >/dev/null 2>&1; then
    echo "-lcuda"
    return 0
  fi
  local lib
  lib=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 / { print $NF; exit }')
  [[ -n $lib ]] && echo "$lib"
}
