// SPDX-License-Identifier: GPL-2.0
/*
 * Who takes which kernel lock, for how long they hold it and wait for it.
 *
 * fexit on every acquiring function (the lock is held once it returns; a
 * trylock only if it says so) and fentry on every releasing one; the time
 * between is the hold.  Where the kernel has no fentry/fexit, kprobes: the
 * acquire's entry notes the lock on the held stack it will go to, and its
 * kretprobe finishes the acquisition.  lock:contention_begin/end time the waits of contended
 * acquisitions.  Everything is aggregated here, per lock (counts, totals,
 * maxima and log-linear histograms) and per (task, lock) (a count and the
 * first stack): nothing per acquisition goes to user space.
 *
 * Held locks are kept on small stacks: per CPU and context (task, softirq,
 * hardirq) for spinlocks and rwlocks, which cannot migrate while held, and per
 * task for mutexes and rw-semaphores, which can sleep.  A release we did not see
 * (the kernel skips a program already running on this CPU: an interrupt nested
 * over one of ours, or on a preemptible kernel another task run while ours was
 * preempted) leaves a stale entry.  Before a held entry orders anything or is
 * marked as held with interrupts on, it is checked against the lock itself: a
 * spinlock's locked byte, a rwlock's counts, a mutex's or a writer rwsem's owner
 * being this task, a reader rwsem's reader count; a lock held exclusively must also
 * have had no acquisition since ours (our stamp of its latest), and one on this
 * task's stack must lie in a frame that has not returned.
 *
 * Our own map updates take the maps' internal spinlocks; a per-CPU, per-context
 * flag tagged with the updating task makes every program ignore the lock calls
 * made on its behalf, so irqlock never reports (or recurses into) itself.  The
 * per-CPU templates new entries are made from are never written: a program that
 * is preempted (preemptible kernels) cannot have them changed under it.
 *
 * Memory is fixed at load: the maps' sizes come from user space (--max-locks).
 * With fentry the per-lock maps are LRU: the locks in use stay, and user space
 * says which share of all acquisitions the locks it shows cover.  Whatever does
 * not fit is counted, never silently dropped.
 *
 * irqlock deadlock loads the same object with three more duties switched on:
 * lock-order edges (held -> newly acquired, first task and stack of each), between the
 * locks and between their classes (a slab cache and offset, see class_of),
 * IRQ safety (locks taken in hardirq, locks held while a hardirq arrived), and
 * blocked tasks (who sleeps in D state since when, who waits for which lock,
 * with the stack of the wait).
 *
 * Each duty is a unit of its own, included below in the order they build on each other:
 * locks_guard (which calls to handle; our own map updates), locks_classes, locks_stats,
 * locks_held (the held stacks and their checks), locks_irq_safety, locks_order,
 * locks_blocked, locks_waits.  This file is the core every lock call goes through
 * (acquired, released), the places a context starts anew, kprobe mode and the table of
 * lock functions; it calls each duty through one hook (class_now, order_acquired,
 * irq_safety_acquired, interrupts_arrived, ...), each switched on by its option.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "locks.h"
#include "preempt_count.h"

#define STACK_BYTES (LOCKS_MAX_STACK * sizeof(__u64))
/* Where a program runs, from preempt_count's bits: each has its held stack, wait and busy
 * flag.  NMI is not traced. */
enum exec_context { CONTEXT_NMI = -1, CONTEXT_TASK = 0, CONTEXT_SOFTIRQ = 1, CONTEXT_HARDIRQ = 2 };
#define CONTEXTS 3		/* task, softirq, hardirq */
#define PC_NMI 0x00f00000	/* preempt_count's NMI, hardirq and softirq-serving bits */
#define PC_HARDIRQ 0x000f0000
#define PC_SOFTIRQ_SERVING 0x00000100
#define LCB_F_SPIN (1U << 0)
#define LCB_F_READ (1U << 1)
#define LCB_F_WRITE (1U << 2)
#define LCB_F_RT (1U << 3)
#define LCB_F_PERCPU (1U << 4)
#define LCB_F_MUTEX (1U << 5)

const volatile __s32 target_tgid = -1;	/* -1: every process */
/* irqlock itself: reading our maps takes their bucket locks in our process (tens of thousands
 * of them, each a lock of its own): not what anyone traces locks for, and it would crowd the
 * maps.  Its lock calls are skipped and counted. */
const volatile __s32 own_tgid = -1;
const volatile __u64 target_lock = 0;	/* 0: every lock */
const volatile bool track_order = false;	/* lock-order edges (irqlock deadlock) */
const volatile bool track_irq_safety = false;	/* hardirq use vs. held with irqs on */
const volatile bool track_blocked = false;	/* D-state sleeps, stacks of sleeping waits */
/* PREEMPT_RT: spinlock_t and rwlock_t are rt_mutex based and sleep; raw spinlocks spin. */
const volatile bool rt_kernel = false;
/* Whether raw_spin_unlock is a function we trace (PREEMPT_RT inlines it): where it is not, a
 * raw spinlock taken by raw_spin_lock is counted but never held on our stacks -- its release
 * would go unseen, and a stale entry would order every lock taken after it. */
const volatile bool plain_unlock_traced = true;
/* kprobe mode: each lock call of our own map updates is a miss of three programs
 * (lock kprobe and kretprobe, unlock kprobe) when spinlocks are traced. */
const volatile __u32 own_misses_per_lock_call = 0;

/* Which pair of lock functions a program traces, where our map updates call that pair:
 * the kernel then skips the program that made the update (it runs once per CPU at a
 * time), and each call of its partner that we see in the update is one such skip. */
enum pair { PAIR_NONE = 0, PAIR_IRQSAVE = 1, PAIR_PLAIN = 2 };
#define PAIR_BITS 4

__u64 locks_dropped = 0;	/* a lock not tracked: the locks map was full */
__u64 holders_dropped = 0;	/* a (task, lock) not tracked: holders map full */
__u64 tasks_dropped = 0;	/* a task's sleeping locks not tracked: task map full */
__u64 held_overflow = 0;	/* stale held entries (missed releases) replaced or forgotten */
__u64 stale_dropped = 0;	/* held entries found released when checked against the lock */
/* Our own map updates re-enter the program that made them (the bucket lock of a hash
 * map is taken with _raw_spin_lock_irqsave, its free list's with _raw_spin_lock): the
 * kernel counts those as recursion misses, though no lock call of anyone else was lost. */
__u64 own_recursion = 0;
/* Of those, the runs of acquire programs (each an acquisition the kernel's count of skipped
 * runs would otherwise call missed): what user space takes off to say how many were. */
__u64 own_acquire_misses = 0;
__u64 waits_dropped = 0;	/* a wait not timed (task_wait full) */
__u64 self_skipped = 0;		/* lock calls made by our own map updates, ignored */
__u64 own_process_skipped = 0;	/* events in irqlock's own process (its map reads), ignored */
__u64 edges_dropped = 0;	/* lock-order edges not kept: edges map full */
__u64 class_edges_dropped = 0;	/* class edges not kept: class_edges map full */
__u64 caches_dropped = 0;	/* a slab cache's name not kept: caches map full */
/* Caches with more lock offsets than CACHE_LOCK_OFFSETS: a free of one of their objects
 * does not stamp the locks past those, whose reuse then goes unnoticed. */
__u64 lock_offsets_dropped = 0;
__u64 slab_locks = 0;		/* class lookups that found a lock in a slab object */
/* The kernel's memory layout could not be read (no kallsyms for it): classes are addresses. */
__u32 classes_unavailable = 0;
__u64 irq_uses_dropped = 0;	/* hardirq / irqs-on uses not kept: map full */
__u64 blocked_dropped = 0;	/* D-state sleeps not kept: blocked map full */
__u64 returns_missed = 0;	/* kprobe mode: an acquire whose return was not seen */

/* The duties (they read the options and counters above). */
#include "locks_guard.bpf.h"
#include "locks_classes.bpf.h"
#include "locks_stats.bpf.h"
#include "locks_held.bpf.h"
#include "locks_irq_safety.bpf.h"
#include "locks_order.bpf.h"
#include "locks_blocked.bpf.h"
#include "locks_waits.bpf.h"

/* The kind of a _raw_spin_* lock: on PREEMPT_RT only raw spinlocks get there. */
#define RAW_SPIN (rt_kernel ? LOCK_RAW_SPIN : LOCK_SPIN)

/* The key a lock is tracked by (see RAW_LOCK_TAG).  The verifier allows a constant added
 * to the argument's pointer, not a bitwise or: an add the compiler cannot fold into one. */
static __always_inline __u64 lock_key(void *lockp, __u32 kind)
{
	__u64 key = (__u64)lockp;

	if (kind == LOCK_RAW_SPIN)
		asm volatile("%[key] += 1" : [key] "+r"(key));	/* RAW_LOCK_TAG: the address is aligned */
	return key;
}

static __always_inline void acquired_in(void *ctx, struct guard *g, int c, __u64 lock, __u64 id,
					__u32 kind, __u32 mode, bool order)
{
	struct lock_class cls = { .cache = CLASS_ANONYMOUS, .where = lock };
	struct lock_stats *s;
	struct held_stack *st;
	__u64 now, born;

	now = bpf_ktime_get_ns();
	if (track_order)	/* each time: the address may be another object's by now */
		class_now(g, lock, &cls);
	s = get_stats(ctx, g, lock, kind, id, now, track_order ? &cls : NULL);
	born = s ? s->born_ns : now;	/* (a new entry is born now) */
	/* Edges first: the new lock is not on the held stack yet. */
	if (track_order && order)
		order_acquired(ctx, g, c, lock, &cls, id, born);
	st = mode == MODE_RELEASE_UNSEEN ? NULL : held_stack(g, c, kind, (__u32)id, true);
	if (st)
		push_held(st, lock, now, kind, mode, &cls, born);
	if (track_irq_safety)
		irq_safety_acquired(ctx, g, c, lock, id);
	count_seen();
	if (s) {
		if (s->first_pid == (__u32)id)
			__sync_fetch_and_add(&s->first_acquisitions, 1);
		if (s->kind != kind)	/* made by a contended wait, whose flags can only guess */
			s->kind = kind;
		__sync_fetch_and_add(&s->acquisitions, 1);
		if (mode == MODE_EXCLUSIVE)
			s->last_acquired_ns = now;
	}
	/* Lock-order edges name where the held lock was taken from here, even when the
	 * statistics of that lock did not fit. */
	if (s || track_order)
		count_holder(ctx, g, lock, id);
}

/* order: whether this acquisition can wait (a trylock cannot, so it orders nothing). */
static __always_inline void acquired(void *ctx, void *lockp, __u32 kind, __u32 mode, __u32 pair,
				     bool order)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct guard g;
	int c;

	if (!enter(&g, &c, pair, false) || filtered_out((__u64)lockp, id))
		return;
	acquired_in(ctx, &g, c, lock_key(lockp, kind), id, kind, mode, order);
}

static __always_inline void released_in(void *ctx, struct guard *g, int c, __u64 lock, __u64 id,
					__u32 kind)
{
	__u64 now = bpf_ktime_get_ns(), acquired_ns = 0;
	struct held_search w = { .lock = lock, .found = -1 };
	struct held_stack *st;
	struct lock_stats *s;
	__u32 d;

	st = held_stack(g, c, kind, (__u32)id, false);
	if (!st)
		return;
	d = st->depth;
	if (d == 0 || d > MAX_HELD)
		return;
	w.st = st;
	/* The most recent acquisition of this lock. */
	bpf_loop(MAX_HELD, find_latest, &w, 0);
	if (w.found >= 0) {
		acquired_ns = st->locks[w.found & (MAX_HELD - 1)].acquired_ns;
		remove_held(st, w.found, d);
	}
	if (!acquired_ns)
		return;	/* taken before we attached, or by a task we do not watch */
	s = bpf_map_lookup_elem(&locks, &lock);
	if (s && s->created_ns <= acquired_ns)	/* else its acquisition was counted elsewhere */
		record(&s->hold_total_ns, &s->hold_max_ns, s->hold_hist, now - acquired_ns);
}

static __always_inline void released(void *ctx, void *lockp, __u32 kind, __u32 pair)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct guard g;
	int c;

	if (enter(&g, &c, pair, true))
		released_in(ctx, &g, c, lock_key(lockp, kind), id, kind);
}

/* Where a hardirq starts: nothing held in hardirq context yet, and the interrupted
 * context had interrupts on. */
static __always_inline void hardirq_starts(void *ctx)
{
	forget_stale(CONTEXT_HARDIRQ);
	interrupts_arrived(ctx);
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(on_irq_handler_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/local_timer_entry")
int BPF_PROG(on_local_timer_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/call_function_entry")
int BPF_PROG(on_call_function_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/call_function_single_entry")
int BPF_PROG(on_call_function_single_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/reschedule_entry")
int BPF_PROG(on_reschedule_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/irq_work_entry")
int BPF_PROG(on_irq_work_entry) { hardirq_starts(ctx); return 0; }

SEC("tp_btf/softirq_entry")
int BPF_PROG(on_softirq_entry) { forget_stale(CONTEXT_SOFTIRQ); return 0; }

/* A task enters a system call holding no lock (lockdep reports one still held on the way
 * back to user space as a bug), and so does this CPU's task context: what our stacks hold
 * there are releases we missed, maybe a system call ago -- a reader's, which the lock's
 * count cannot tell from another reader's. */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();

	forget_stale(CONTEXT_TASK);
	forget(bpf_map_lookup_elem(&task_held, &pid));
	return 0;
}

/* A task's entries go with it (entries are kept while it lives: no map update per lock). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(task_exit, struct task_struct *task)
{
	__u32 pid = task->pid;
	struct guard g;
	int c;

	if (!enter(&g, &c, PAIR_NONE, false))
		return 0;
	guarded_delete(&g, &task_held, &pid);
	guarded_delete(&g, &task_wait, &pid);
	if (track_blocked) {
		guarded_delete(&g, &blocked, &pid);
		guarded_delete(&g, &wait_stacks, &pid);
	}
	return 0;
}

/* ---- kprobe mode: the lock at entry, the outcome at return ------------------- *
 * The lock waits on the held stack it will go to: a context's for spinlocks and
 * rwlocks, the task's for sleeping locks.  Nothing else of the same stack is called
 * between an acquire's entry and return (a mutex's wait_lock is a spinlock, on the
 * context's stack), so one slot is enough. */
static __always_inline void acquire_called(void *lockp, __u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct held_stack *st;
	struct guard g;
	int c;

	if (!enter(&g, &c, PAIR_NONE, false) || filtered_out((__u64)lockp, id))
		return;
	st = held_stack(&g, c, kind, (__u32)id, true);
	if (!st)
		return;
	if (st->pending)	/* the kretprobe ran out of instances (many sleepers) */
		__sync_fetch_and_add(&returns_missed, 1);
	st->pending = (__u64)lockp;
}

static __always_inline void *acquire_returned(__u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid(), lock;
	struct held_stack *st;
	struct guard g;
	int c;

	if (!enter(&g, &c, PAIR_NONE, false))
		return NULL;
	st = held_stack(&g, c, kind, (__u32)id, false);
	if (!st)
		return NULL;
	lock = st->pending;
	st->pending = 0;
	return (void *)lock;
}

/* ---- acquire and release functions ----------------------------------------- */

/* Where there is no fexit: the entry kprobe sets the lock aside, the kretprobe counts
 * it acquired if `success` holds (it may look at ret, the function's return value). */
#define KPROBES_ACQUIRE(fn, kind, mode, pair, success, order)			\
SEC("kprobe/" #fn)								\
int BPF_KPROBE(fn##_kprobe, void *lock) { acquire_called(lock, kind); return 0; }	\
SEC("kretprobe/" #fn)								\
int BPF_KRETPROBE(fn##_kretprobe, int ret)					\
{										\
	void *lock = acquire_returned(kind);					\
										\
	if (lock && (success))							\
		acquired(ctx, lock, kind, mode, pair, order);			\
	return 0;								\
}

/* For acquires that return nothing: ret is there, and meaningless. */
#define ALWAYS ((void)ret, 1)

#define ACQUIRE_P(fn, kind, mode, pair)						\
SEC("fexit/" #fn)								\
int BPF_PROG(fn##_exit, void *lock) { acquired(ctx, lock, kind, mode, pair, true); return 0; }	\
KPROBES_ACQUIRE(fn, kind, mode, pair, ALWAYS, true)

#define ACQUIRE(fn, kind, mode) ACQUIRE_P(fn, kind, mode, PAIR_NONE)

/* Killable/interruptible locks: acquired only if ret says so. */
#define ACQUIRE_IF_ORDER(fn, kind, mode, success, order)			\
SEC("fexit/" #fn)								\
int BPF_PROG(fn##_exit, void *lock, int ret)					\
{ if (success) acquired(ctx, lock, kind, mode, PAIR_NONE, order); return 0; }	\
KPROBES_ACQUIRE(fn, kind, mode, PAIR_NONE, success, order)

#define ACQUIRE_IF(fn, kind, mode, success) ACQUIRE_IF_ORDER(fn, kind, mode, success, true)
/* A trylock never waits, so it cannot deadlock: it is held but orders nothing. */
#define TRYLOCK(fn, kind, mode, success) ACQUIRE_IF_ORDER(fn, kind, mode, success, false)

#define RELEASE_P(fn, kind, pair)						\
SEC("fentry/" #fn)								\
int BPF_PROG(fn##_entry, void *lock) { released(ctx, lock, kind, pair); return 0; }	\
SEC("kprobe/" #fn)								\
int BPF_KPROBE(fn##_kprobe, void *lock) { released(ctx, lock, kind, pair); return 0; }

#define RELEASE(fn, kind) RELEASE_P(fn, kind, PAIR_NONE)

#define EXCL MODE_EXCLUSIVE
#define SHARED MODE_SHARED

/* Our map updates lock and unlock with the first two pairs (bucket and LRU list locks). */
#define PLAIN (plain_unlock_traced ? MODE_EXCLUSIVE : MODE_RELEASE_UNSEEN)
ACQUIRE_P(_raw_spin_lock, RAW_SPIN, PLAIN, PAIR_PLAIN)
ACQUIRE(_raw_spin_lock_irq, RAW_SPIN, EXCL)
ACQUIRE_P(_raw_spin_lock_irqsave, RAW_SPIN, EXCL, PAIR_IRQSAVE)
ACQUIRE(_raw_spin_lock_bh, RAW_SPIN, EXCL)
TRYLOCK(_raw_spin_trylock, RAW_SPIN, PLAIN, ret)
TRYLOCK(_raw_spin_trylock_bh, RAW_SPIN, EXCL, ret)
RELEASE_P(_raw_spin_unlock, RAW_SPIN, PAIR_PLAIN)
RELEASE(_raw_spin_unlock_irq, RAW_SPIN)
RELEASE_P(_raw_spin_unlock_irqrestore, RAW_SPIN, PAIR_IRQSAVE)
RELEASE(_raw_spin_unlock_bh, RAW_SPIN)

/* PREEMPT_RT's spinlock_t and rwlock_t (every _irq, _irqsave, _bh variant comes here) */
ACQUIRE(rt_spin_lock, LOCK_SPIN, EXCL)
TRYLOCK(rt_spin_trylock, LOCK_SPIN, EXCL, ret)
TRYLOCK(rt_spin_trylock_bh, LOCK_SPIN, EXCL, ret)
RELEASE(rt_spin_unlock, LOCK_SPIN)
ACQUIRE(rt_read_lock, LOCK_RW, SHARED)
ACQUIRE(rt_write_lock, LOCK_RW, EXCL)
TRYLOCK(rt_read_trylock, LOCK_RW, SHARED, ret)
TRYLOCK(rt_write_trylock, LOCK_RW, EXCL, ret)
RELEASE(rt_read_unlock, LOCK_RW)
RELEASE(rt_write_unlock, LOCK_RW)

ACQUIRE(_raw_read_lock, LOCK_RW, SHARED)
ACQUIRE(_raw_read_lock_irq, LOCK_RW, SHARED)
ACQUIRE(_raw_read_lock_irqsave, LOCK_RW, SHARED)
ACQUIRE(_raw_read_lock_bh, LOCK_RW, SHARED)
TRYLOCK(_raw_read_trylock, LOCK_RW, SHARED, ret)
ACQUIRE(_raw_write_lock, LOCK_RW, EXCL)
ACQUIRE(_raw_write_lock_irq, LOCK_RW, EXCL)
ACQUIRE(_raw_write_lock_irqsave, LOCK_RW, EXCL)
ACQUIRE(_raw_write_lock_bh, LOCK_RW, EXCL)
TRYLOCK(_raw_write_trylock, LOCK_RW, EXCL, ret)
RELEASE(_raw_read_unlock, LOCK_RW)
RELEASE(_raw_read_unlock_irq, LOCK_RW)
RELEASE(_raw_read_unlock_irqrestore, LOCK_RW)
RELEASE(_raw_read_unlock_bh, LOCK_RW)
RELEASE(_raw_write_unlock, LOCK_RW)
RELEASE(_raw_write_unlock_irq, LOCK_RW)
RELEASE(_raw_write_unlock_irqrestore, LOCK_RW)
RELEASE(_raw_write_unlock_bh, LOCK_RW)

ACQUIRE(mutex_lock, LOCK_MUTEX, EXCL)
ACQUIRE(mutex_lock_io, LOCK_MUTEX, EXCL)
ACQUIRE_IF(mutex_lock_interruptible, LOCK_MUTEX, EXCL, ret == 0)
ACQUIRE_IF(mutex_lock_killable, LOCK_MUTEX, EXCL, ret == 0)
TRYLOCK(mutex_trylock, LOCK_MUTEX, EXCL, ret == 1)
RELEASE(mutex_unlock, LOCK_MUTEX)

ACQUIRE(down_read, LOCK_RWSEM, SHARED)
ACQUIRE_IF(down_read_interruptible, LOCK_RWSEM, SHARED, ret == 0)
ACQUIRE_IF(down_read_killable, LOCK_RWSEM, SHARED, ret == 0)
TRYLOCK(down_read_trylock, LOCK_RWSEM, SHARED, ret == 1)
ACQUIRE(down_write, LOCK_RWSEM, EXCL)
ACQUIRE_IF(down_write_killable, LOCK_RWSEM, EXCL, ret == 0)
TRYLOCK(down_write_trylock, LOCK_RWSEM, EXCL, ret == 1)
RELEASE(up_read, LOCK_RWSEM)
RELEASE(up_write, LOCK_RWSEM)

char LICENSE[] SEC("license") = "GPL";

