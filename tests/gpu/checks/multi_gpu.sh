# shellcheck shell=bash
# Several GPUs on one node (issue 7): one scheduler, one scheduling domain
# per GPU, and multi-GPU programs (PyTorch DDP over NCCL, one process per
# GPU) correct under the hook, alone and while they share each GPU with a
# program that forces them to be swapped out and in.

DDP_PY=$GPU_DIR/py/ddp_train.py
DDP_STEPS=${DDP_STEPS:-300}
# The swapped run: each rank keeps this much ballast, moved on every switch.
DDP_BALLAST_GIB=${DDP_BALLAST_GIB:-2}
DDP_CAPACITY_GIB=4

# need_two_gpus : skips unless this run may use two GPUs.
need_two_gpus() {
  [[ -z ${SUITE_ONE_GPU:-} ]] || skip "the suite runs on one GPU (--gpu): multi-GPU checks need every GPU"
  local n
  n=$(gpu_count)
  ((n >= 2)) || skip "needs 2 GPUs, nvidia-smi lists $n"
}

# ddp_start TAG HOW [ENV=VALUE...] : starts the two ranks of ddp_train.py,
# each as program TAG.r0 / TAG.r1; HOW is `native` or `hooked MODE` (job
# names TAG.r0, TAG.r1). DDP_STEPS steps, DDP_BALLAST GiB of ballast (0).
declare -gA DDP_PIDS=()
ddp_start() {
  local tag=$1 how=$2 r
  shift 2
  local init=$CHECK_DIR/$tag.rendezvous
  rm -f "$init"
  # The rendezvous is the file above; MASTER_ADDR/PORT are set as torchrun
  # sets them, so the hook recognises the ranks as one job (gang).
  local port=$((20000 + $(printf '%s' "$tag" | cksum | cut -d' ' -f1) % 20000))
  for r in 0 1; do
    local cmd=(env CUDA_DEVICE_ORDER=PCI_BUS_ID RANK=$r LOCAL_RANK=$r WORLD_SIZE=2
      MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@")
    if [[ $how == native ]]; then
      cmd=(native "${cmd[@]}")
    else
      cmd=(hooked "${how#hooked }" "$tag.r$r" "${cmd[@]}")
    fi
    prog_bg 240 "$tag.r$r" "${cmd[@]}" "$PY" "$DDP_PY" --steps "$DDP_STEPS" --init-file "$init" \
      --ballast-gib "${DDP_BALLAST:-0}"
    DDP_PIDS[$tag.r$r]=$BG_PID
  done
}

# ddp_finish TAG : waits for both ranks of TAG; returns non-zero if either
# failed or printed ok=0, with DDP_FAILED saying why.
ddp_finish() {
  local tag=$1 r rc
  DDP_FAILED=""
  for r in 0 1; do
    rc=0
    wait_prog "$tag.r$r" "${DDP_PIDS[$tag.r$r]}" || rc=$?
    if ((rc != 0)) || [[ $(value "$tag.r$r" ok) != 1 ]]; then
      DDP_FAILED+="${DDP_FAILED:+; }$(why_failed "$tag.r$r" "$rc") allreduce_bad=$(value "$tag.r$r" allreduce_bad) ballast_bad=$(value "$tag.r$r" ballast_bad)"
    fi
  done
  [[ -z $DDP_FAILED ]]
}

# ddp_run TAG HOW [ENV=VALUE...] : ddp_start, then ddp_finish.
ddp_run() {
  ddp_start "$@"
  ddp_finish "$1"
}

# same_ddp NATIVE_TAG TAG : both ranks of TAG printed the loss and hash
# rank 0 of NATIVE_TAG printed (ranks of one run must agree with each other
# too); sets DDP_SAME, or DDP_DIFF to what differs.
same_ddp() {
  local want_loss want_hash r
  want_loss=$(value "$1.r0" loss) want_hash=$(value "$1.r0" hash)
  DDP_DIFF=""
  [[ -n $want_loss && -n $want_hash ]] || { DDP_DIFF="the $1 run printed no result"; return 1; }
  for r in 0 1; do
    if [[ $(value "$2.r$r" loss) != "$want_loss" || $(value "$2.r$r" hash) != "$want_hash" ]]; then
      DDP_DIFF+="${DDP_DIFF:+; }$2 rank $r: loss $(value "$2.r$r" loss) hash $(value "$2.r$r" hash | cut -c1-16) vs $1 loss $want_loss hash ${want_hash:0:16}"
    fi
  done
  DDP_SAME="loss $want_loss, hash ${want_hash:0:16}"
  [[ -z $DDP_DIFF ]]
}

# Proves: a two-process DDP training run (NCCL, one GPU per process) under
# the hook in swap mode gives the identical loss and parameter hash as the
# run without it, NCCL's all-reduce is exact, and the one scheduler keeps a
# domain per GPU. Also reports ddp_two_gpus_swapped: the same run while a
# program on each GPU that holds nearly all of a 4 GiB virtual GPU (quantum
# 1 s) takes turns with the rank there, so each rank and its 2 GiB of
# ballast are swapped out and in while its peer waits in NCCL: still the
# identical result, every byte of ballast intact, no deadlock.
check_ddp_two_gpus() {
  need_two_gpus
  python_has torch || skip "torch is not importable here"
  python_has torch.distributed || skip "torch.distributed is not importable here"
  local g
  for g in 0 1; do
    (($(gpu_free_gib "$g") >= DDP_CAPACITY_GIB + 2 * DDP_BALLAST_GIB + 4)) ||
      fail "not run: GPU $g has only $(gpu_free_gib "$g") GiB free"
  done
  ddp_run native native || fail "native run: $DDP_FAILED"
  with_scheduler
  ddp_run ddp "hooked swap" || fail "hooked run: $DDP_FAILED"
  same_ddp native ddp || fail "the hooked run differs from the native one: $DDP_DIFF"
  ctl_status "$SOCK" "$CHECK_DIR/status.json" || true
  echo "status after the hooked run: $(cat "$CHECK_DIR/status.json" 2>/dev/null)"
  local domains
  domains=$("$PY" "$STATUS_PY" per-gpu "$CHECK_DIR/status.json" capacity | wc -l)
  [[ $domains == 2 ]] || fail "the scheduler shows ${domains:-no} GPU domains after the DDP run, want 2"
  local plain="two ranks on two GPUs, $DDP_STEPS steps: identical loss and parameter hash on both ranks with and without the hook ($DDP_SAME); exact 64 MiB all-reduce; 2 GPU domains in status"
  stop_scheduler

  # The same training, each rank time-sliced with a forcing program on its GPU.
  with_scheduler --memory-capacity "${DDP_CAPACITY_GIB}GiB" --quantum 1
  local forcers=() uuid frc
  for g in 0 1; do
    uuid=$(gpu_uuid "$g")
    CUDA_VISIBLE_DEVICES=$uuid prog_bg 300 "forcer$g" hooked swap "forcer$g" "$PY" "$GPU_DIR/py/swap_forcer.py" \
      --bytes $((DDP_CAPACITY_GIB * GIB - 8 * 1024 * 1024)) --stop-file "$CHECK_DIR/stop" --name "forcer$g"
    forcers+=("$BG_PID")
  done
  local i
  for ((i = 0; i < 900; i++)); do
    grep -q '^READY ' "$(out_of forcer0)" 2>/dev/null && grep -q '^READY ' "$(out_of forcer1)" 2>/dev/null && break
    sleep 0.1
  done
  local rc=0
  DDP_BALLAST=$DDP_BALLAST_GIB NVSHARE_LOG=debug ddp_run swapped "hooked swap" || rc=1
  touch "$CHECK_DIR/stop"
  local forcer_failed=""
  for g in 0 1; do
    frc=0
    wait_prog "forcer$g" "${forcers[g]}" || frc=$?
    if ((frc != 0)) || [[ $(value "forcer$g" ok) != 1 ]]; then
      forcer_failed+=" forcer$g: $(why_failed "forcer$g" "$frc") bad=$(value "forcer$g" bad)"
    fi
  done
  ctl_status "$SOCK" "$CHECK_DIR/swapped.json" || true
  echo "status after the swapped run: $(cat "$CHECK_DIR/swapped.json" 2>/dev/null)"
  local outs ins
  outs="$(moves_in swapped.r0 evicted)/$(moves_in swapped.r1 evicted)"
  ins="$(moves_in swapped.r0 restored)/$(moves_in swapped.r1 restored)"
  local verdict=PASS detail
  if ((rc != 0)); then
    verdict=FAIL detail="swapped run: $DDP_FAILED"
  elif [[ -n $forcer_failed ]]; then
    verdict=FAIL detail="a forcing program failed:$forcer_failed"
  elif ! same_ddp native swapped; then
    verdict=FAIL detail="the swapped run differs from the native one: $DDP_DIFF"
  elif [[ ${outs%%/*} -lt 2 || ${outs##*/} -lt 2 || ${ins%%/*} -lt 2 || ${ins##*/} -lt 2 ]]; then
    verdict=FAIL detail="too few switches to prove anything: swap-outs per rank $outs, swap-ins $ins (want >= 2 each)"
  else
    detail="each rank time-sliced with a 4 GiB program on its GPU (quantum 1 s), swapped out $outs and in $ins times (rank 0/rank 1), ${DDP_BALLAST_GIB} GiB ballast intact: identical result ($DDP_SAME) in $(value swapped.r0 seconds) s vs $(value native.r0 seconds) s native"
  fi
  also_report ddp_two_gpus_swapped "$verdict" "$detail"
  pass "$plain"
}

# Proves: two DDP jobs (two ranks each, rank r on GPU r) that do not fit
# each GPU together (6 GiB of ballast per rank on a 10 GiB virtual GPU,
# quantum 1 s) are time-sliced on both GPUs and both finish with the native
# result. Each step's all-reduce waits for the peer rank on the other GPU:
# when job A holds one GPU and job B the other, both drains are stuck in
# NCCL kernels, and only the scheduler's drain timeout (2 s here) lets the
# peers in beside them. Without it the four processes wait for each other
# until NCCL's own timeout kills them.
check_ddp_two_jobs() {
  need_two_gpus
  python_has torch || skip "torch is not importable here"
  local g ballast=6 steps=${DDP_JOBS_STEPS:-20}
  for g in 0 1; do
    (($(gpu_free_gib "$g") >= 2 * ballast + 10)) ||
      fail "not run: GPU $g has only $(gpu_free_gib "$g") GiB free"
  done
  DDP_STEPS=$steps ddp_run native native || fail "native run: $DDP_FAILED"
  with_scheduler --memory-capacity 10GiB --quantum 1 --drain-timeout 2
  local t0
  t0=$(now)
  DDP_STEPS=$steps DDP_BALLAST=$ballast ddp_start jobA "hooked swap"
  DDP_STEPS=$steps DDP_BALLAST=$ballast ddp_start jobB "hooked swap"
  local failed=""
  ddp_finish jobA || failed+="job A: $DDP_FAILED; "
  ddp_finish jobB || failed+="job B: $DDP_FAILED; "
  local seconds
  seconds=$(elapsed "$t0")
  ctl_status "$SOCK" "$CHECK_DIR/status.json" || true
  echo "status after the two jobs: $(cat "$CHECK_DIR/status.json" 2>/dev/null)"
  stop_scheduler
  local overdue switches groups
  overdue=$(grep -c "drain overdue" "$CHECK_DIR/scheduler.log")
  groups=$(grep "client connected" "$CHECK_DIR/scheduler.log" | grep -o 'group=[^ ]*' | sort -u | tr '\n' ' ')
  switches=$("$PY" "$STATUS_PY" per-gpu "$CHECK_DIR/status.json" switches | awk '{ printf "%s%s", sep, $2; sep = "/" }')
  [[ -z $failed ]] || fail "${failed}(after $seconds s, $overdue overdue drains)"
  same_ddp native jobA || fail "job A differs from the native run: $DDP_DIFF"
  same_ddp native jobB || fail "job B differs from the native run: $DDP_DIFF"
  pass "two 2-rank DDP jobs time-sliced on both GPUs ($steps steps, ${ballast} GiB ballast per rank, 10 GiB virtual GPUs, quantum 1 s): both identical to native ($DDP_SAME) in $seconds s (native alone $(value native.r0 seconds) s); $overdue overdue drains let peers in; switches per GPU $switches; groups seen: ${groups:-none}"
}
