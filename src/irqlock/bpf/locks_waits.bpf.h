// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, contended waits: lock:contention_begin/end time each wait, per CPU and
 * context for spinning locks, per task for sleeping ones, with the owner where the lock
 * names one.
 *
 * Hooks: the two tracepoint programs; they add to the statistics' wait figures.
 */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);			/* pid */
	__type(value, struct wait_state);	/* a sleeping lock's contended wait */
} task_wait SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CONTEXTS);
	__type(key, __u32);
	__type(value, struct wait_state);	/* a spinning wait */
} cpu_wait SEC(".maps");

/* ---- contended waits ------------------------------------------------------- */

static __always_inline bool sleeping_wait(__u32 flags)
{
	return (flags & LCB_F_MUTEX) || !(flags & LCB_F_SPIN);
}

/* A guess where the flags cannot tell (PREEMPT_RT's LCB_F_RT is set by spinlock_t and mutex
 * alike): the acquisition that follows puts the kind of its function in. */
static __always_inline __u32 kind_of_wait(__u32 flags)
{
	if (rt_kernel && (flags & LCB_F_SPIN))
		return LOCK_RAW_SPIN;
	if (rt_kernel && (flags & LCB_F_RT))
		return (flags & (LCB_F_READ | LCB_F_WRITE)) ? LOCK_RW : LOCK_SPIN;
	if (flags & LCB_F_MUTEX)
		return LOCK_MUTEX;
	if (!(flags & LCB_F_SPIN))
		return LOCK_RWSEM;
	return (flags & (LCB_F_READ | LCB_F_WRITE)) ? LOCK_RW : LOCK_SPIN;
}

/* Who owns a mutex or a writer-held rwsem now (its owner word less the flag bits). */
static __always_inline __u32 owner_pid(void *lockp, __u32 flags)
{
	struct task_struct *task;
	long owner;

	if (rt_kernel) {	/* the rt_mutex's owner: a writer of an rwbase, else the holder */
		if (flags & (LCB_F_READ | LCB_F_WRITE))
			owner = (long)BPF_CORE_READ((struct rwbase_rt___rt *)lockp, rtmutex.owner);
		else
			owner = (long)BPF_CORE_READ((struct rt_mutex_base *)lockp, owner);
	} else if (flags & LCB_F_MUTEX) {
		owner = BPF_CORE_READ((struct mutex *)lockp, owner.counter);
	} else {
		owner = BPF_CORE_READ((struct rw_semaphore *)lockp, owner.counter);
		if (owner & 1)
			return 0;	/* RWSEM_READER_OWNED: the word names a reader, maybe gone */
	}
	task = (struct task_struct *)(owner & ~0x7L);
	return task ? BPF_CORE_READ(task, pid) : 0;
}

SEC("tp_btf/contention_begin")
int BPF_PROG(contention_begin, void *lockp, unsigned int flags)
{
	__u64 lock = (__u64)lockp, id = bpf_get_current_pid_tgid();
	__u32 pid = (__u32)id, key;
	struct wait_state *w, fresh = {};
	struct guard g;
	int c;

	/* percpu-rwsem, and (but on PREEMPT_RT) rt_mutex: kinds we do not trace */
	if ((flags & LCB_F_PERCPU) || ((flags & LCB_F_RT) && !rt_kernel))
		return 0;
	if (!enter(&g, &c, PAIR_NONE, false) || filtered_out(lock, id))
		return 0;
	if (rt_kernel && (flags & LCB_F_SPIN))
		lock |= RAW_LOCK_TAG;
	if (!sleeping_wait(flags)) {
		key = c;
		w = bpf_map_lookup_elem(&cpu_wait, &key);
		if (w) {
			w->lock = lock;
			w->flags = flags;
			w->start_ns = bpf_ktime_get_ns();
		}
		return 0;
	}
	/* A mutex reports a begin for its optimistic spin and again before it sleeps:
	 * the wait started at the first. */
	w = bpf_map_lookup_elem(&task_wait, &pid);
	if (w && w->lock == lock && w->start_ns)
		return 0;
	/* PREEMPT_RT: a reader's wait for an rwbase waits again, inside, for its rt_mutex */
	if (rt_kernel && w && w->start_ns &&
	    lock == w->lock + bpf_core_field_offset(struct rwbase_rt___rt, rtmutex))
		return 0;
	if (track_blocked)
		note_wait_stack(ctx, &g, pid);
	if (w) {
		w->lock = lock;
		w->flags = flags;
		w->owner_pid = owner_pid(lockp, flags);
		w->start_ns = bpf_ktime_get_ns();
		return 0;
	}
	fresh.lock = lock;
	fresh.flags = flags;
	fresh.owner_pid = owner_pid(lockp, flags);
	fresh.start_ns = bpf_ktime_get_ns();
	if (guarded_update(&g, &task_wait, &pid, &fresh))
		__sync_fetch_and_add(&waits_dropped, 1);
	return 0;
}

SEC("tp_btf/contention_end")
int BPF_PROG(contention_end, void *lockp, int ret)
{
	__u64 lock = (__u64)lockp, now = bpf_ktime_get_ns(), start = 0;
	__u32 pid = (__u32)bpf_get_current_pid_tgid(), key, flags = 0;
	struct wait_state *w;
	struct lock_stats *s;
	struct guard g;
	int c;

	if (!enter(&g, &c, PAIR_NONE, false))
		return 0;
	key = c;
	w = bpf_map_lookup_elem(&cpu_wait, &key);
	if (w && (w->lock & ~RAW_LOCK_TAG) == lock && w->start_ns) {
		lock = w->lock;	/* a raw spinlock's key on PREEMPT_RT */
		start = w->start_ns;
		flags = w->flags;
		w->start_ns = 0;
	} else if (c == CONTEXT_TASK) {
		w = bpf_map_lookup_elem(&task_wait, &pid);
		if (w && w->lock == lock && w->start_ns) {
			start = w->start_ns;
			flags = w->flags;
			w->start_ns = 0;
		}
	}
	if (!start || ret)
		return 0;	/* not seen begin, or the wait was interrupted (no lock taken) */
	s = get_stats(ctx, &g, lock, kind_of_wait(flags), bpf_get_current_pid_tgid(), now, NULL);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->contended, 1);
	record(&s->wait_total_ns, &s->wait_max_ns, s->wait_hist, now - start);
	return 0;
}
