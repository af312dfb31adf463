/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between locks.bpf.c and irqlock/tracers/locks.py. */
#ifndef IRQLOCK_LOCKS_H
#define IRQLOCK_LOCKS_H

#define TASK_COMM_LEN 16
#define LOCKS_MAX_STACK 24
#define MAX_HELD 16		/* locks one task (or one CPU context) holds at once */

/* Log-linear histogram: values 0..7 exactly, then 8 buckets per power of two
 * (error <= 1/16 of the value at a bucket's middle) up to 2^36 ns (~69 s). */
#define HIST_SUB_BITS 3
#define HIST_MAX_EXP 35
#define HIST_BUCKETS ((HIST_MAX_EXP - 1) * 8)	/* 272: the last index is (35 - 2) * 8 + 7 */

/* On PREEMPT_RT, spinlock_t and rwlock_t sleep (LOCK_SPIN and LOCK_RW there mean rt_spin_lock
 * and rt_read/write_lock) and LOCK_RAW_SPIN is what still spins. */
enum lock_kind { LOCK_SPIN = 0, LOCK_RW = 1, LOCK_MUTEX = 2, LOCK_RWSEM = 3, LOCK_RAW_SPIN = 4 };

/* On PREEMPT_RT a raw spinlock can share its address with a sleeping lock (the wait_lock at
 * the start of every rt_mutex): its keys carry this bit, user space masks it off. */
#define RAW_LOCK_TAG 1ULL

/* How a held lock was taken (held_lock.mode): shared holders do not own the lock alone. */
enum lock_mode { MODE_EXCLUSIVE = 0, MODE_SHARED = 1,
		 MODE_RELEASE_UNSEEN = 2 /* exclusive, but its release is inlined: never held */ };

/* A lock's class, lockdep's "locks that are logically the same": a lock inside a slab object
 * is its cache and its offset in the object (every inode's i_rwsem is one class); any other
 * lock is its own class, its key -- user space names a static lock by its symbol and folds
 * the copies of a per-CPU lock into one. */
struct lock_class {
	__u64 cache;		/* struct kmem_cache *; else CLASS_STATIC or CLASS_ANONYMOUS */
	__u64 where;		/* the offset in the object (| RAW_LOCK_TAG); else the lock's key */
};

/* Not in a slab object: a static or per-CPU lock (named by kallsyms), or any other lock --
 * page allocations, vmalloc, stacks: its address tells nothing of what it is, and it is left
 * out of the class graph (the graph between instances has it). */
#define CLASS_STATIC 0
#define CLASS_ANONYMOUS 1

/* Where in one object of a cache its locks are, as far as seen (a free stamps them). */
#define CACHE_LOCK_OFFSETS 6

/* A slab cache a class was found in, read when first seen. */
struct cache_info {
	char name[32];
	__u32 size;		/* the stride between objects (object and metadata) */
	__u32 object_size;
	__s32 refcount;		/* > 1: other caches were merged into it (mixed types) */
	__u32 flags;		/* CACHE_HAS_CTOR: never merged */
	__u32 nr_lock_offsets;	/* CACHE_LOCK_OFFSETS at most; more are counted, not kept */
	__u32 lock_offsets[CACHE_LOCK_OFFSETS];	/* a lock's class where (| RAW_LOCK_TAG) */
};

#define CACHE_HAS_CTOR 1
#define CACHE_OFFSETS_FULL 2	/* more lock offsets than CACHE_LOCK_OFFSETS seen */

struct lock_stats {
	__u32 kind;
	__u32 first_pid;	/* who took it first while we watched: names a dynamic lock */
	__u64 acquisitions;
	__u64 contended;
	__u64 hold_total_ns;
	__u64 hold_max_ns;
	__u64 wait_total_ns;
	__u64 wait_max_ns;
	__u64 last_acquired_ns;	/* the latest exclusive acquisition seen: checks held entries */
	__u64 created_ns;	/* holds that began before are not this entry's (LRU reuse) */
	/* When the memory of this lock became the lock it is now: the entry's creation, or the
	 * latest free of the slab object it is in; an order edge made before was another
	 * object's (irqlock deadlock only). */
	__u64 born_ns;
	struct lock_class cls;	/* when the entry was made */
	/* The first holder, kept with the lock: its entry in the holders map may have gone
	 * (LRU) while the lock's stayed, and a lock is shown with at least its first holder. */
	__u64 first_acquisitions;
	__u32 first_tgid;
	__s32 first_stack_bytes;	/* < 0: not captured */
	char first_comm[TASK_COMM_LEN];
	__u64 first_stack[LOCKS_MAX_STACK];
	__u32 hold_hist[HIST_BUCKETS];
	__u32 wait_hist[HIST_BUCKETS];
};

struct holder_key {
	__u64 lock;
	__u32 pid;
	__u32 pad;
};

/* One task's use of one lock: a count and the first stack only. */
struct holder {
	__u64 acquisitions;
	__u32 tgid;
	__s32 stack_bytes;	/* < 0: not captured */
	char comm[TASK_COMM_LEN];
	__u64 stack[LOCKS_MAX_STACK];
};

struct held_lock {
	__u64 lock;
	__u64 acquired_ns;
	__u32 kind;
	__u32 mode;
	struct lock_class cls;	/* irqlock deadlock only */
	__u64 born_ns;		/* the lock's born_ns when it was taken (deadlock only) */
};

struct held_stack {
	__u32 depth;
	__u32 pad;
	struct held_lock locks[MAX_HELD];
	__u64 pending;		/* kprobe mode: the lock an acquire was called with, until it returns */
};

/* A task inside a contended acquire (start_ns 0: not waiting now). */
struct wait_state {
	__u64 lock;
	__u64 start_ns;
	__u32 flags;		/* the contention tracepoint's LCB_F_* */
	__u32 owner_pid;	/* mutex or rwsem writer owner when the wait began; 0: unknown */
};

/* Where a task sleeps waiting for a lock (irqlock deadlock only). */
struct wait_stack {
	__s32 stack_bytes;	/* < 0: not captured */
	__u32 pad;
	__u64 stack[LOCKS_MAX_STACK];
};

/* A task asleep in D state. */
struct blocked_task {
	__u64 since_ns;
	__u32 tgid;
	__u32 flags;		/* BLOCKED_BEFORE_START: seeded by user space, since_ns a lower bound */
};

#define BLOCKED_BEFORE_START 1

struct edge_key {
	__u64 held;
	__u64 acquired;		/* while held was held */
};

/* Who used a lock in a way worth reporting, first seen. */
struct lock_use {
	__u32 pid;
	__u32 tgid;
	__s32 stack_bytes;
	__u32 pad;
	char comm[TASK_COMM_LEN];
	__u64 stack[LOCKS_MAX_STACK];
};

/* A lock-order edge: who made it first and where, and where that task had taken the held
 * lock (its first stack of it, copied when the edge is made: the holders map may have let
 * it go by the time user space looks). */
struct edge_use {
	struct lock_use use;
	__s32 held_stack_bytes;	/* < 0: not known */
	__u32 pad;
	__u64 held_stack[LOCKS_MAX_STACK];
	struct lock_class held_cls;	/* the classes of the two locks when the edge was made */
	struct lock_class acquired_cls;
	__u64 held_born_ns;	/* the two locks' born_ns then: edges of one cycle that see */
	__u64 acquired_born_ns;	/* one lock born at two times were made on reused memory */
};

/* class(held) -> class(acquired), two different classes, with the first example. */
struct class_edge_key {
	struct lock_class held;
	struct lock_class acquired;
};

struct class_edge {
	__u64 held_lock;	/* the two instances of the first example */
	__u64 acquired_lock;
	struct edge_use edge;
};

#endif
