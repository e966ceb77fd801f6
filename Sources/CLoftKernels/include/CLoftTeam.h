#ifndef CLOFT_TEAM_H
#define CLOFT_TEAM_H
/*
 * A team of worker threads that run the indices of one job at a time with
 * the calling thread, for the many short parallel loops of decoding (seven
 * matrix-vector products per layer, ~0.1 ms each on a small model) and of a
 * training step.
 *
 * Why not GCD's concurrentPerform: each call wakes its threads through the
 * kernel, tens of microseconds that a 0.1 ms product cannot afford. The
 * team's workers spin (with `pause`) for a short while after each job, so the
 * next job that comes within that while starts at once; then they sleep on a
 * futex and cost nothing. Indices are claimed one at a time from a counter
 * tagged with the job's number, so a worker late from one job can never run
 * an index of the next with the last one's function.
 */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*loft_team_fn)(void *context, long index);

/* Runs fn(context, i) for i in 0..<count on the calling thread and up to
   `threads` - 1 workers (started on first use, at most 63), and returns 1
   when every index has run. Returns 0 without running anything when the team
   is running another job (a call from a worker, or from a second thread at
   the same time): the caller then runs the indices some other way. */
int loft_team_run(long count, int threads, loft_team_fn fn, void *context);

/* How long (microseconds) workers spin after a job before they sleep
   (default 300; `LOFT_SPIN_US` sets it at first use; 0 sleeps at once). */
void loft_team_set_spin_us(long microseconds);

/* A counter shared by the indices of one job (work claimed by whoever
   arrives first, and how much of it is done): fetch-and-add and load with
   sequentially consistent ordering, and a spin-wait until it reaches a value. */
long loft_counter_add(long *counter, long value);
long loft_counter_load(const long *counter);
void loft_counter_wait(const long *counter, long value);

#ifdef __cplusplus
}
#endif
#endif
