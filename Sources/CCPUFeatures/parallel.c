// A small spinning thread pool for the engine's parallel loops (see cpu_features.h).
//
// Protocol: the caller publishes a job under `pool_lock` and bumps `generation`; helpers spin
// on `generation` (then sleep on `pool_cond`), take the job under the lock (counting
// themselves in `job->users`), and claim indices from `job->next` until none is left. The
// caller claims indices too, waits until every claimed index has finished (`remaining`),
// unpublishes the job and waits for the helpers to let go of it (`users`), because the job
// lives on its stack.

#include "cpu_features.h"

#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define MAX_HELPERS 63
#define SPIN_NANOSECONDS 200000L

struct job {
    prunecheck_task task;
    void *context;
    long count;
    long helpers_wanted;
    long helpers;            /* guarded by pool_lock */
    atomic_long next;
    atomic_long remaining;
    atomic_long users;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static atomic_long generation;
static struct job *current;  /* guarded by pool_lock */
static long started;         /* guarded by pool_lock */

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A wait that also yields now and then: with more threads than free cores, the thread waited
   for may need this core to run at all. */
static inline void wait_step(long *spins) {
    relax();
    if (++*spins % 256 == 0) sched_yield();
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static void run_tasks(struct job *j) {
    for (;;) {
        long i = atomic_fetch_add(&j->next, 1);
        if (i >= j->count) return;
        j->task(j->context, i);
        atomic_fetch_sub(&j->remaining, 1);
    }
}

static void *helper(void *unused) {
    (void)unused;
    long seen = atomic_load(&generation);
    for (;;) {
        long start = now_ns();
        long spins = 0;
        while (atomic_load_explicit(&generation, memory_order_acquire) == seen) {
            wait_step(&spins);
            if (spins % 1024 == 0 && now_ns() - start > SPIN_NANOSECONDS) {
                pthread_mutex_lock(&pool_lock);
                while (atomic_load(&generation) == seen) pthread_cond_wait(&pool_cond, &pool_lock);
                pthread_mutex_unlock(&pool_lock);
                break;
            }
        }
        seen = atomic_load(&generation);
        pthread_mutex_lock(&pool_lock);
        struct job *j = current;
        if (j && j->helpers < j->helpers_wanted) {
            j->helpers += 1;
            atomic_fetch_add(&j->users, 1);
        } else {
            j = 0;
        }
        pthread_mutex_unlock(&pool_lock);
        if (!j) continue;
        run_tasks(j);
        atomic_fetch_sub_explicit(&j->users, 1, memory_order_release);
    }
    return 0;
}

void prunecheck_parallel_for(long count, long threads, prunecheck_task task, void *context) {
    if (count <= 0) return;
    long helpers = threads - 1;
    if (helpers > count - 1) helpers = count - 1;
    if (helpers > MAX_HELPERS) helpers = MAX_HELPERS;
    if (helpers <= 0) {
        for (long i = 0; i < count; i++) task(context, i);
        return;
    }
    struct job j;
    j.task = task;
    j.context = context;
    j.count = count;
    j.helpers_wanted = helpers;
    j.helpers = 0;
    atomic_init(&j.next, 0);
    atomic_init(&j.remaining, count);
    atomic_init(&j.users, 0);

    pthread_mutex_lock(&pool_lock);
    while (started < helpers) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, helper, 0);
        pthread_attr_destroy(&attr);
        if (failed) break;  /* fewer helpers: the caller runs what they would have */
        started += 1;
    }
    current = &j;
    atomic_fetch_add_explicit(&generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool_cond);
    pthread_mutex_unlock(&pool_lock);

    run_tasks(&j);
    long spins = 0;
    while (atomic_load_explicit(&j.remaining, memory_order_acquire) > 0) wait_step(&spins);

    pthread_mutex_lock(&pool_lock);
    if (current == &j) current = 0;
    pthread_mutex_unlock(&pool_lock);
    while (atomic_load_explicit(&j.users, memory_order_acquire) > 0) wait_step(&spins);
}

/* Per-thread scratch (see cpu_features.h): a table of slots per thread behind a pthread key,
 * whose destructor frees them when the thread exits. */

struct scratch_slot {
    void *pointer;
    unsigned long bytes;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *table) {
    struct scratch_slot *slots = table;
    for (int i = 0; i < PRUNECHECK_SCRATCH_SLOTS; i++) free(slots[i].pointer);
    free(slots);
}

static void scratch_make_key(void) { pthread_key_create(&scratch_key, scratch_free); }

void *prunecheck_thread_scratch(int slot, unsigned long bytes) {
    pthread_once(&scratch_once, scratch_make_key);
    struct scratch_slot *slots = pthread_getspecific(scratch_key);
    if (slots == NULL) {
        slots = calloc(PRUNECHECK_SCRATCH_SLOTS, sizeof *slots);
        if (slots == NULL || pthread_setspecific(scratch_key, slots) != 0) {
            free(slots);
            return NULL;
        }
    }
    struct scratch_slot *s = &slots[slot];
    if (s->bytes < bytes || s->pointer == NULL) {
        unsigned long size = (bytes + 63) / 64 * 64;
        if (size == 0) size = 64;
        void *p = NULL;
        if (posix_memalign(&p, 64, size) != 0) return NULL;
        free(s->pointer);
        s->pointer = p;
        s->bytes = size;
    }
    return s->pointer;
}
