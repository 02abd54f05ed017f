#ifndef PRUNECHECK_CPU_FEATURES_H
#define PRUNECHECK_CPU_FEATURES_H

/// 1 when the CPU and the OS support the AVX-512 subset the wide GEMM kernel is built for
/// (F, BW, DQ, VL: what LLVM's skylake-avx512 target may emit), 0 otherwise.
int prunecheck_cpu_has_avx512(void);

#endif
