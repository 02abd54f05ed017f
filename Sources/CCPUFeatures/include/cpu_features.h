#ifndef PRUNECHECK_CPU_FEATURES_H
#define PRUNECHECK_CPU_FEATURES_H

/// 1 when the CPU and the OS support the AVX-512 subset the wide GEMM kernel is built for
/// (F, BW, DQ, VL: what LLVM's skylake-avx512 target may emit), 0 otherwise.
int prunecheck_cpu_has_avx512(void);

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


#endif
