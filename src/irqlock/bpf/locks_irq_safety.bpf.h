// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, IRQ safety (irqlock deadlock): the locks taken in hardirq context, and the
 * locks seen held, with interrupts on, when a hardirq arrived; a lock in both can deadlock
 * against its own interrupt.
 *
 * Hooks: irq_safety_acquired() at an acquisition, interrupts_arrived() where a hardirq
 * starts.
 */

/* locks taken in hardirq context, and locks seen held while a hardirq arrived */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lock_use);
} hardirq_locks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lock_use);
} irqs_on_locks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lock_use);
} new_use SEC(".maps");

/* The first use of `key` in `map` (hardirq use, irqs-on hold), with a stack. */
static __always_inline void note_use(void *ctx, struct guard *g, void *map, void *key, __u64 id,
				     __u64 *dropped)
{
	bool made;
	struct lock_use *u = lookup_or_make(g, map, key, &new_use, dropped, &made);

	if (u && made)
		fill_use(ctx, u, id);
}

/* A hardirq arrived: whatever the interrupted context holds, it holds with interrupts
 * on -- proof, where a plain spin_lock alone proves nothing (the caller may have turned
 * them off itself).  Noted here, with the interrupted task and stack (a release may be
 * inlined, as raw_spin_unlock is on PREEMPT_RT).  The task context always had them on
 * when we get here; a softirq only if one was being served (else its stack is not in use). */
static __always_inline void held_with_irqs_on(void *ctx, struct guard *g, __u32 context)
{
	struct held_stack *st = bpf_map_lookup_elem(&cpu_held, &context);
	__u64 id = bpf_get_current_pid_tgid(), lock;
	struct returned_frames none = {};	/* we run on the interrupt's stack */

	if (!st)
		return;
	/* Only what the locks say is held: the interrupted program may be ours, in the
	 * middle of changing this stack, so stale entries are left for it to drop. */
	for (__u32 i = 0; i < MAX_HELD; i++) {
		if (i >= st->depth)
			break;
		if (!still_held(&st->locks[i], &none))
			continue;
		lock = st->locks[i].lock;
		note_use(ctx, g, &irqs_on_locks, &lock, id, &irq_uses_dropped);
	}
}

static __always_inline void interrupts_arrived(void *ctx)
{
	int pc = this_cpu_preempt_count();
	struct guard g;
	int c;

	if (!track_irq_safety || !enter(&g, &c, PAIR_NONE, false))
		return;
	held_with_irqs_on(ctx, &g, CONTEXT_TASK);
	if (pc & PC_SOFTIRQ_SERVING)
		held_with_irqs_on(ctx, &g, CONTEXT_SOFTIRQ);
}

/* A lock was just taken in context c: in hardirq, it is a lock interrupts take. */
static __always_inline void irq_safety_acquired(void *ctx, struct guard *g, int c, __u64 lock,
						__u64 id)
{
	if (c == CONTEXT_HARDIRQ)
		note_use(ctx, g, &hardirq_locks, &lock, id, &irq_uses_dropped);
}
