/*
 * The worker team of CLoftTeam.h. One job at a time: the caller publishes
 * the job's function, context and count, then a ticket (job number << 32 |
 * next index) with a release store, and bumps the futex word `wake`. Every
 * participant claims indices by compare-and-swap on the ticket, which fails
 * once the ticket names another job, so the fields a worker read belong to
 * the job whose index it claimed. The caller returns when `done` reaches the
 * count; it resets `done` only after that, so no late increment can mix jobs.
 */
#define _GNU_SOURCE
#include "CLoftTeam.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
static void futex_wait(_Atomic uint32_t *word, uint32_t value) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}
static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
/* Elsewhere a sleeping worker looks again every 100 microseconds. */
static void futex_wait(_Atomic uint32_t *word, uint32_t value) { (void)word; (void)value; usleep(100); }
static void futex_wake_all(_Atomic uint32_t *word) { (void)word; }
#endif

#define MAX_WORKERS 63

static _Atomic uint64_t ticket;
static _Atomic long done_count;
static _Atomic long job_count;
static _Atomic int job_threads;
static _Atomic(loft_team_fn) job_fn;
static _Atomic(void *) job_context;
static _Atomic uint32_t wake;
static _Atomic int sleepers;
static _Atomic int busy;
static _Atomic long spin_ns = -1;
static int workers;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int in_team;   /* on workers, and on a caller while its job runs: nested calls run in place */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static long spin_budget(void) {
    long s = atomic_load_explicit(&spin_ns, memory_order_relaxed);
    if (s >= 0) return s;
    const char *env = getenv("LOFT_SPIN_US");
    long us = env ? atol(env) : 300;
    if (us < 0) us = 0;
    atomic_store(&spin_ns, us * 1000);
    return us * 1000;
}

void loft_team_set_spin_us(long microseconds) {
    atomic_store(&spin_ns, microseconds < 0 ? 0 : microseconds * 1000);
}

/* Claims the next index of job `job` (of `count`); 0 when none is left. */
static int claim(uint32_t job, long count, long *index) {
    uint64_t t = atomic_load_explicit(&ticket, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(t >> 32) != job || (long)(uint32_t)t >= count) return 0;
        if (atomic_compare_exchange_weak_explicit(&ticket, &t, t + 1, memory_order_acq_rel, memory_order_acquire)) {
            *index = (long)(uint32_t)t;
            return 1;
        }
    }
}

static void run_claimed(uint32_t job, long count, loft_team_fn fn, void *context) {
    long i;
    while (claim(job, count, &i)) {
        fn(context, i);
        atomic_fetch_add_explicit(&done_count, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    const int id = (int)(intptr_t)arg;   /* 0-based: worker id joins jobs of at least id + 2 threads */
    in_team = 1;
    uint32_t seen = atomic_load(&wake);
    for (;;) {
        uint32_t w;
        long spins = 0, since = 0;
        while ((w = atomic_load_explicit(&wake, memory_order_acquire)) == seen) {
            cpu_relax();
            if (++spins & 127) continue;
            long now = now_ns();
            if (since == 0) { since = now; continue; }
            if (now - since < spin_budget()) continue;
            atomic_fetch_add(&sleepers, 1);
            if (atomic_load(&wake) == seen)
                futex_wait(&wake, seen);
            atomic_fetch_sub(&sleepers, 1);
            since = 0;
        }
        seen = w;
        uint64_t t = atomic_load_explicit(&ticket, memory_order_acquire);
        long count = atomic_load_explicit(&job_count, memory_order_relaxed);
        int threads = atomic_load_explicit(&job_threads, memory_order_relaxed);
        loft_team_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
        void *context = atomic_load_explicit(&job_context, memory_order_relaxed);
        if (id + 2 > threads || fn == NULL) continue;
        run_claimed((uint32_t)(t >> 32), count, fn, context);
    }
    return NULL;
}

/* Starts workers until there are `n` (or as many as could be started). */
static void ensure_workers(int n) {
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    if (__atomic_load_n(&workers, __ATOMIC_ACQUIRE) >= n) return;
    pthread_mutex_lock(&start_lock);
    while (workers < n) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)workers);
        pthread_attr_destroy(&attr);
        if (failed) break;
        __atomic_store_n(&workers, workers + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&start_lock);
}

int loft_team_run(long count, int threads, loft_team_fn fn, void *context) {
    if (count <= 0) return 1;
    /* Nested (from a worker, or from the caller inside its own job) or one
       thread: run here, in order. */
    if (in_team || threads <= 1 || count == 1) {
        for (long i = 0; i < count; i++) fn(context, i);
        return 1;
    }
    if (count > (long)UINT32_MAX) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&busy, &expected, 1)) return 0;
    if (threads > MAX_WORKERS + 1) threads = MAX_WORKERS + 1;
    ensure_workers(threads - 1);
    in_team = 1;
    atomic_store_explicit(&done_count, 0, memory_order_relaxed);
    atomic_store_explicit(&job_count, count, memory_order_relaxed);
    atomic_store_explicit(&job_threads, threads, memory_order_relaxed);
    atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job_context, context, memory_order_relaxed);
    uint32_t job = (uint32_t)(atomic_load_explicit(&ticket, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&ticket, (uint64_t)job << 32, memory_order_release);
    atomic_fetch_add(&wake, 1);
    if (atomic_load(&sleepers) > 0) futex_wake_all(&wake);
    run_claimed(job, count, fn, context);
    while (atomic_load_explicit(&done_count, memory_order_acquire) < count) cpu_relax();
    in_team = 0;
    atomic_store_explicit(&busy, 0, memory_order_release);
    return 1;
}

long loft_counter_add(long *counter, long value) {
    return atomic_fetch_add((_Atomic long *)counter, value);
}

long loft_counter_load(const long *counter) {
    return atomic_load((_Atomic long *)counter);
}

void loft_counter_wait(const long *counter, long value) {
    while (atomic_load_explicit((_Atomic long *)counter, memory_order_acquire) < value) cpu_relax();
}
