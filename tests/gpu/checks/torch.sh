# shellcheck shell=bash
# PyTorch under the hook: results identical to a native run, with each of
# PyTorch's allocators, and CUDA graphs.

TORCH_DET=$GPU_DIR/py/train_det.py
export CUBLAS_WORKSPACE_CONFIG=:4096:8

# same_training LABEL_NATIVE LABEL_HOOKED [ARGS...] : fails the check unless
# both runs printed the same loss and parameter hash; sets SAME to both.
same_training() {
  local n_loss n_hash h_loss h_hash
  n_loss=$(value "$1" loss) n_hash=$(value "$1" hash)
  h_loss=$(value "$2" loss) h_hash=$(value "$2" hash)
  [[ -n $n_loss && -n $n_hash ]] || fail "the native run printed no result"
  [[ -n $h_loss && -n $h_hash ]] || fail "the hooked run printed no result"
  if [[ $n_loss != "$h_loss" || $n_hash != "$h_hash" ]]; then
    # Tell a hook-made difference from a test that is not deterministic here.
    prog 120 native_again native "$PY" "$TORCH_DET" "${@:3}" || true
    if [[ $(value native_again hash) != "$n_hash" ]]; then
      fail "two native runs differ too: the training is not deterministic on this machine"
    fi
    fail "hooked run differs: loss $h_loss vs native $n_loss, hash ${h_hash:0:16} vs ${n_hash:0:16}"
  fi
  SAME="loss $h_loss, hash ${h_hash:0:16}"
}

# Proves: the hook changes no result. Final loss (exact float) and a SHA-256
# of every parameter are identical with and without it.
check_torch_deterministic() {
  local args=(--steps 300) rc=0
  prog 120 native native "$PY" "$TORCH_DET" "${args[@]}" || fail "native run: $(why_failed native $?)"
  with_scheduler
  prog 120 hooked hooked "$MODE" det "$PY" "$TORCH_DET" "${args[@]}" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  same_training native hooked "${args[@]}"
  pass "identical loss and parameter hash with and without the hook: $SAME"
}

# torch_with_allocator CONF WANT_BACKEND WANT_EXPANDABLE : the training run
# with PYTORCH_CUDA_ALLOC_CONF=CONF, native then hooked, compared.
torch_with_allocator() {
  local conf=$1 want_backend=$2 want_expandable=$3 args=(--steps 60) rc=0
  PYTORCH_CUDA_ALLOC_CONF=$conf prog 120 native native "$PY" "$TORCH_DET" "${args[@]}" ||
    fail "native run: $(why_failed native $?)"
  [[ $(value native allocator) == "$want_backend" ]] ||
    fail "PYTORCH_CUDA_ALLOC_CONF=$conf did not take effect natively (backend $(value native allocator))"
  with_scheduler
  PYTORCH_CUDA_ALLOC_CONF=$conf prog 120 hooked hooked "$MODE" alloc "$PY" "$TORCH_DET" "${args[@]}" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  [[ $(value hooked allocator) == "$want_backend" ]] || fail "hooked run used backend $(value hooked allocator)"
  if [[ -n $want_expandable && $(value hooked expandable) != "$want_expandable" ]]; then
    fail "hooked run: expandable segments $(value hooked expandable), want $want_expandable"
  fi
  PYTORCH_CUDA_ALLOC_CONF=$conf same_training native hooked "${args[@]}"
  pass "PYTORCH_CUDA_ALLOC_CONF=$conf: same result as native ($SAME)"
}

# Proves: programs using VMM themselves (cuMemCreate/Map via expandable
# segments) run correctly under the hook.
check_torch_expandable_segments() {
  torch_with_allocator expandable_segments:True native 1
}

# Proves: stream-ordered allocation (cuMemAllocAsync, pools) works under the hook.
check_torch_cuda_malloc_async() {
  torch_with_allocator backend:cudaMallocAsync cudaMallocAsync ""
}

# Proves: CUDA graph capture and replay (cuGraphLaunch) work under the hook.
check_torch_cuda_graph() {
  local rc=0
  with_scheduler
  prog 120 hooked hooked "$MODE" graph "$PY" "$GPU_DIR/py/cuda_graph.py" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  pass "graph replays verified: counter $(value hooked counter), forward diff $(value hooked forward_max_diff), loss $(value hooked loss_first) -> $(value hooked loss_last)"
}
