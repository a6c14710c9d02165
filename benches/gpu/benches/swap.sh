# shellcheck shell=bash
# swap mode (issue 5): the benchmarks to come. Each is a named slot that
# reports SKIP until it is written; what it will measure is stated here so
# the implementation slots into the same runner, helpers and result format
# (add_result with the same-run pinned baseline from bench_pinned_memcpy:
# run it with MEMCPY_GIB=12, or call pinned_h2d_baseline 12).

todo() { skip "TODO (issue 5, swap mode): $*"; }

# TODO(issue 5): swap bandwidth. One hooked swap-mode program holding 12 GiB
# (VMM-backed), made to swap out and in by a second program on a 16 GiB
# capacity; from the hook's swap-out/swap-in log lines (bytes, elapsed_us)
# and the status counters: out GB/s and in GB/s, each as a ratio to pinned
# D2H / H2D at 12 GiB measured in the same run. Target >= 0.9 each way.
bench_swap_bandwidth() { todo "12 GiB swap-out and swap-in bandwidth vs pinned cudaMemcpy"; }

# TODO(issue 5): switch latency. Two 12 GiB programs on a 16 GiB capacity;
# from the scheduler's drop request to the next program's first kernel
# (scheduler log "lock drop requested" -> "lock granted" timestamps, and the
# program's own first-kernel timestamp after its grant), with 12 GiB leaving
# and 12 GiB arriving. Target <= 0.6 s (limit ~0.29 s overlapped, 0.47 s not).
bench_switch_latency() { todo "switch latency, 12 GiB out + 12 GiB in"; }

# TODO(issue 5): oversubscription makespan. Four 12 GiB jobs (two memory-bound
# loops like tests/gpu/py/mem_worker.py, two training loops) on a 16 GiB
# capacity at quantum 30 s and 5 s: makespan / (sum of the four run alone one
# after another, no hook). Target <= 1.05 at 30 s. The same mix in uvm mode
# where it fits in free memory; the GPU's physical memory peak (nvidia-smi
# sampled). Needs more than one 10-minute command at quantum 30 s: size the
# jobs down or run it as its own call.
bench_oversubscription() { todo "4 x 12 GiB jobs on 16 GiB, makespan vs serial"; }

# TODO(issue 5): fitting mix. Two 4 GiB jobs on a 16 GiB capacity, hooked
# (swap mode, auto policy: they co-run, nothing swaps) vs the same two run
# together without nvshare: throughput ratio. Target >= 0.98.
bench_fitting_mix() { todo "2 x 4 GiB jobs co-running vs no nvshare"; }
