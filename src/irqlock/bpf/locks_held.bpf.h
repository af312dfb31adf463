// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, held locks: a small stack per CPU and context (task, softirq, hardirq) for
 * the locks that spin, per task for those that can sleep (mutexes, rwsems, and on
 * PREEMPT_RT spinlock_t and rwlock_t).  A release we did not see leaves a stale entry: an
 * entry is checked against the lock itself (still_held) before it orders anything, and a
 * context that begins anew forgets what its stack still has.
 *
 * Hooks: push_held() at an acquisition, find_latest()/remove_held() at a release,
 * drop_if_released() before a walk, forget_stale() where a context starts.
 */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);			/* pid */
	__type(value, struct held_stack);	/* mutexes and rwsems held */
} task_held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CONTEXTS);
	__type(key, __u32);
	__type(value, struct held_stack);	/* spinlocks and rwlocks held */
} cpu_held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct held_stack);
} new_stack SEC(".maps");

/* Whether a holder of this kind can sleep and migrate: its held stack is the task's. */
static __always_inline bool sleeping_kind(__u32 kind)
{
	return kind == LOCK_MUTEX || kind == LOCK_RWSEM ||
	       (rt_kernel && (kind == LOCK_SPIN || kind == LOCK_RW));
}

static __always_inline struct held_stack *held_stack(struct guard *g, int c, __u32 kind,
						     __u32 pid, bool create)
{
	struct held_stack *st;
	__u32 key = c, zero = 0;

	if (!sleeping_kind(kind))
		return bpf_map_lookup_elem(&cpu_held, &key);
	st = bpf_map_lookup_elem(&task_held, &pid);
	if (st || !create)
		return st;
	st = bpf_map_lookup_elem(&new_stack, &zero);
	if (!st)
		return NULL;
	if (guarded_update(g, &task_held, &pid, st)) {
		__sync_fetch_and_add(&tasks_dropped, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&task_held, &pid);
}

static __always_inline void set_held(struct held_stack *st, __u32 i, __u64 lock, __u64 now,
				     __u32 kind, __u32 mode, struct lock_class *cls, __u64 born)
{
	barrier_var(i);	/* keep the compiler from dropping the mask the verifier needs */
	i &= MAX_HELD - 1;
	st->locks[i].lock = lock;
	st->locks[i].acquired_ns = now;
	st->locks[i].kind = kind;
	st->locks[i].mode = mode;
	st->locks[i].cls = *cls;
	st->locks[i].born_ns = born;
}

/* A search of one held stack for a lock, as a bpf_loop callback (see struct held_walk). */
struct held_search {
	struct held_stack *st;
	__u64 lock;
	__s32 found;	/* the slot holding `lock`; -1: none */
	__u32 oldest;	/* the slot taken longest ago (find_slot only) */
};

/* Entry i: `lock` itself, or older than the oldest so far. */
static long find_slot(__u32 i, void *data)
{
	struct held_search *w = data;
	struct held_stack *st = w->st;
	__u32 oldest = w->oldest & (MAX_HELD - 1);

	if (i >= MAX_HELD || i >= st->depth)
		return 1;
	if (st->locks[i].lock == w->lock) {
		w->found = i;
		return 1;
	}
	if (st->locks[i].acquired_ns < st->locks[oldest].acquired_ns)
		w->oldest = i;
	return 0;
}

/* Entry MAX_HELD-1-n, from the top: the latest acquisition of `lock` first. */
static long find_latest(__u32 n, void *data)
{
	struct held_search *w = data;
	struct held_stack *st = w->st;
	__u32 i;

	if (n >= MAX_HELD)
		return 1;
	i = MAX_HELD - 1 - n;
	if (i >= st->depth || st->locks[i].lock != w->lock)
		return 0;
	w->found = i;
	return 1;
}

/* A lock already held here had its release missed (a lock cannot be taken twice in one
 * context, bar recursive readers): this acquisition replaces the stale entry.  A full
 * stack means releases we did not see either (locks freed through an untraced path): the
 * oldest entry makes room.  The stale count says so. */
static __always_inline void push_held(struct held_stack *st, __u64 lock, __u64 now, __u32 kind,
				      __u32 mode, struct lock_class *cls, __u64 born)
{
	struct held_search w = { .st = st, .lock = lock, .found = -1 };
	__u32 d = st->depth;

	bpf_loop(MAX_HELD, find_slot, &w, 0);
	if (w.found >= 0 || d >= MAX_HELD) {
		__sync_fetch_and_add(&held_overflow, 1);
		set_held(st, w.found >= 0 ? w.found : w.oldest, lock, now, kind, mode, cls, born);
		return;
	}
	set_held(st, d, lock, now, kind, mode, cls, born);
	st->depth = d + 1;
}

/* Entry i of a stack `d` deep goes; the last entry fills its slot. */
static __always_inline void remove_held(struct held_stack *st, __u32 i, __u32 d)
{
	__u32 last = d - 1;

	barrier_var(last);	/* keep the compiler from dropping the mask the verifier needs */
	last &= MAX_HELD - 1;
	i &= MAX_HELD - 1;
	st->locks[i] = st->locks[last];
	st->depth = d - 1;
}

#define QRW_LOCKED 0xffU	/* qrwlock: a writer holds it (the low byte) */
#define QR_SHIFT 9		/* qrwlock: readers counted from bit 9 */
#define RWSEM_WRITER_LOCKED 1L
#define RWSEM_READER_SHIFT 8	/* rwsem count: readers in bits 8..62 */
#define RWSEM_READERS ((1UL << 55) - 1)
#define OWNER_FLAGS 0x7L	/* mutex and rwsem owner words: flags in the low bits */

/* PREEMPT_RT's reader/writer base (not in a stock kernel's BTF: used only where rt_kernel):
 * readers is READER_BIAS while no writer has it, plus one per reader; WRITER_BIAS while a
 * writer holds it, its rt_mutex then owned by the writer. */
struct rwbase_rt___rt {
	atomic_t readers;
	struct rt_mutex_base rtmutex;
} __attribute__((preserve_access_index));
#define RWBASE_READER_BIAS (1U << 31)
#define RWBASE_WRITER_BIAS (1U << 30)

/* Whether the task running now owns the mutex or rwsem whose owner word is `owner`. */
static __always_inline bool owned_by_current(long owner)
{
	return (owner & ~OWNER_FLAGS) == (long)bpf_get_current_task();
}

/* What the lock itself says of a held entry: a spinlock's locked byte, a rwlock's writer
 * byte or readers, a sleeping lock held exclusively naming this task as its owner.  Readers
 * of a rwlock or rwsem are only counted: held by someone, maybe not by this task. */
/* On PREEMPT_RT for the rt_mutex based kinds: a spinlock_t and a mutex start with their
 * rt_mutex, whose owner is the task holding them; rwlocks and rwsems are rwbase. */
static __always_inline bool rt_lock_says_held(void *lockp, struct held_lock *h)
{
	__u32 readers;

	if (h->kind == LOCK_SPIN || h->kind == LOCK_MUTEX)
		return owned_by_current((long)BPF_CORE_READ((struct rt_mutex_base *)lockp, owner));
	readers = BPF_CORE_READ((struct rwbase_rt___rt *)lockp, readers.counter);
	if (h->mode == MODE_SHARED)
		return (readers & ~RWBASE_READER_BIAS) && readers != RWBASE_WRITER_BIAS;
	return readers == RWBASE_WRITER_BIAS &&
	       owned_by_current((long)BPF_CORE_READ((struct rwbase_rt___rt *)lockp, rtmutex.owner));
}

static __always_inline bool lock_says_held(void *lockp, struct held_lock *h)
{
	__u32 word = 0;
	__u64 count;

	if (rt_kernel && h->kind != LOCK_RAW_SPIN)
		return rt_lock_says_held(lockp, h);
	if (h->kind == LOCK_MUTEX)
		return owned_by_current(BPF_CORE_READ((struct mutex *)lockp, owner.counter));
	if (h->kind == LOCK_RWSEM) {
		count = BPF_CORE_READ((struct rw_semaphore *)lockp, count.counter);
		if (h->mode == MODE_SHARED)
			return (count >> RWSEM_READER_SHIFT) & RWSEM_READERS;
		return (count & RWSEM_WRITER_LOCKED) &&
		       owned_by_current(BPF_CORE_READ((struct rw_semaphore *)lockp, owner.counter));
	}
	if (bpf_probe_read_kernel(&word, sizeof(word), lockp))
		return false;
	if (h->kind == LOCK_RW && h->mode == MODE_SHARED)
		return word >> QR_SHIFT;
	/* the spinlock's locked byte, the rwlock's writer byte */
	return h->kind == LOCK_RW ? (word & QRW_LOCKED) == QRW_LOCKED : word & 0xff;
}

/* x86-64's THREAD_SIZE (twice that with KASAN: the upper half then goes unchecked). */
#define TASK_STACK_BYTES (4096UL << 2)

/* Where on this task's stack the frames that have returned are: from the stack's bottom up
 * to the context of the call we trace (the trampoline's saved arguments, the kprobe's saved
 * registers), which is below the frame of every function still running.  Empty where the
 * program does not run on the task's stack (an interrupt's). */
struct returned_frames {
	__u64 from, to;
};

static __always_inline struct returned_frames returned_frames(void *ctx)
{
	struct returned_frames dead = {};
	__u64 frame = as_number(ctx);

	if (!frame)
		return dead;
	dead.from = (__u64)BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), stack);
	dead.to = frame - dead.from < TASK_STACK_BYTES ? frame : dead.from;
	return dead;
}

/* Whether a held entry still holds its lock.  A lock on the stack (a wait queue's, a
 * completion's) lives in the frame of a function still running; one in a frame that has
 * returned is gone, and its memory is now our own frames' or a later call's, which may
 * well hold this task's pointer where the lock's owner word was.  Nobody can have taken a
 * lock held exclusively since we took it: our stamp of its latest acquisition says. */
static __always_inline bool still_held(struct held_lock *h, struct returned_frames *dead)
{
	__u64 lock = h->lock & ~RAW_LOCK_TAG;
	struct lock_stats *s;

	if (lock - dead->from < dead->to - dead->from || !lock_says_held((void *)lock, h))
		return false;
	if (h->mode != MODE_EXCLUSIVE)
		return true;
	s = bpf_map_lookup_elem(&locks, &h->lock);
	return !s || s->last_acquired_ns == h->acquired_ns;
}

/* What a walk of one held stack needs.  The walks below are bpf_loop callbacks: the
 * verifier checks a callback once where it would check an unrolled loop MAX_HELD times, in
 * each of the acquire programs (under TCG, 30 s of loading `deadlock` on 6.12). */
struct held_walk {
	void *ctx;
	struct guard *g;
	struct held_stack *st;
	struct returned_frames *dead;
	struct lock_class *cls;	/* the class of the lock just taken */
	__u64 lock, id;		/* the lock just taken, by whom */
	__u64 born;		/* the born_ns of the lock just taken */
};

/* Entry MAX_HELD-1-n of the stack goes if its lock says it is no longer held (a release
 * we did not see); from the top, so that the entry moved into a freed slot was seen. */
static long drop_if_released(__u32 n, void *data)
{
	struct held_walk *w = data;
	struct held_stack *st = w->st;
	__u32 i, d = st->depth;

	if (n >= MAX_HELD)
		return 1;
	i = MAX_HELD - 1 - n;
	if (i >= d || d > MAX_HELD || still_held(&st->locks[i], w->dead))
		return 0;
	remove_held(st, i, d);
	__sync_fetch_and_add(&stale_dropped, 1);
	return 0;
}

/* Nothing is held in `context` where it begins anew (a softirq handler starts, a
 * local timer interrupt arrives): what our stack still has there is a release we
 * missed (the kernel skips a program that is already running on this CPU), and it
 * would only mislead: hold times, order edges, IRQ safety. */
static __always_inline void forget(struct held_stack *st)
{
	if (st && st->depth) {
		__sync_fetch_and_add(&held_overflow, st->depth);
		st->depth = 0;
	}
}

static __always_inline void forget_stale(__u32 context)
{
	forget(bpf_map_lookup_elem(&cpu_held, &context));
}
