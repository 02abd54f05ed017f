#ifndef PRUNECHECK_CPU_FEATURES_H
#define PRUNECHECK_CPU_FEATURES_H

/// 1 when the CPU and the OS support the AVX-512 subset the wide GEMM kernel is built for
/// (F, BW, DQ, VL: what LLVM's skylake-avx512 target may emit), 0 otherwise.
int prunecheck_cpu_has_avx512(void);

/// Keeps tensors of up to 32 MB in glibc's heap and the heap from being trimmed, so that a
/// training loop reuses its memory instead of faulting it in every step (allocator.c). Call
/// once, before the first tensor; a no-op elsewhere than glibc.
void prunecheck_tune_allocator(void);

/// One task of a parallel loop: index `index` of the loop, with the caller's context.
typedef void (*prunecheck_task)(void *context, long index);

/// Runs task(context, i) for every 0 <= i < count, on the calling thread and up to
/// `threads - 1` persistent helper threads; returns when every task has finished. Which thread
/// runs which index is not fixed, so each index must write its own outputs.
///
/// Helpers spin for a short while after a loop before they sleep: a pool that wakes through
/// the scheduler (Dispatch's concurrentPerform here) handed both halves of a 150-microsecond
/// GEMM to the calling thread 199 times in 200, so small parallel work never ran in parallel.
void prunecheck_parallel_for(long count, long threads, prunecheck_task task, void *context);


/// Scratch slots per thread (`prunecheck_thread_scratch`).
#define PRUNECHECK_SCRATCH_SLOTS 4

/// A buffer of at least `bytes` bytes, 64-byte aligned, that belongs to the calling thread:
/// its scratch slot `slot` (0 ..< PRUNECHECK_SCRATCH_SLOTS). The buffer is kept for the
/// thread's next call (grown when a call needs more), so kernels that need scratch on every
/// call do not allocate in a steady-state loop; it is freed when the thread exits. Its
/// contents are undefined, and the next call for the same slot on the same thread may move it:
/// a caller holds a slot only while it uses it, and no two uses of one slot nest. Returns NULL
/// only when memory runs out.
void *prunecheck_thread_scratch(int slot, unsigned long bytes);

/// A counter of the instructions the calling thread retires in user space (the kernel's
/// PERF_COUNT_HW_INSTRUCTIONS, through perf_event_open), started now: its file descriptor, or
/// -errno where the kernel or the container denies it (perf_event_paranoid, seccomp, a VM
/// without a PMU).
int prunecheck_instructions_open(void);
/// The count so far, -1 when it cannot be read.
long long prunecheck_instructions_read(int fd);
void prunecheck_instructions_close(int fd);

/// A hint to bring the 64-byte line at `p` into the second-level cache, for data a kernel reads
/// soon after (the GEMM's next B panels): it never faults, so `p` may be past the end of a buffer.
static inline void prunecheck_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }

/// A hint to bring the 64-byte line at `p` into the cache for writing (the GEMM's next C tile,
/// whose stores otherwise wait for their lines): it never faults.
static inline void prunecheck_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

#endif
