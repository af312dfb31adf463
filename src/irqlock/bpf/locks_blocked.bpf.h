// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, blocked tasks (irqlock deadlock): who sleeps in D state since when, and
 * the stack where a task went to sleep for a lock.
 *
 * Hooks: the sched_switch program; note_wait_stack() where a sleeping wait begins.
 */

/* Tasks asleep in D state (uninterruptible, not TASK_IDLE) and since when. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);			/* pid */
	__type(value, struct blocked_task);
} blocked SEC(".maps");

/* Stacks of sleeping waits: what a deadlocked or hung task was doing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);			/* pid */
	__type(value, struct wait_stack);
} wait_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wait_stack);
} new_wait_stack SEC(".maps");

/* Where a task goes to sleep for a lock: only for irqlock deadlock, and only for
 * sleeping waits (a stack walk per contended spin would cost more than the wait). */
static __always_inline void note_wait_stack(void *ctx, struct guard *g, __u32 pid)
{
	bool made;
	struct wait_stack *ws = lookup_or_make(g, &wait_stacks, &pid, &new_wait_stack,
					       &waits_dropped, &made);

	if (ws)
		ws->stack_bytes = bpf_get_stack(ctx, ws->stack, STACK_BYTES, 0);
}

/* ---- blocked tasks ---------------------------------------------------------- */

#define TASK_UNINTERRUPTIBLE 0x0002
#define TASK_NOLOAD 0x0400	/* TASK_IDLE: asleep in D on purpose, not blocked */

/* A task leaving the CPU in D state is blocked from now; one coming back is not. */
SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct blocked_task entry = {};
	__u32 state = BPF_CORE_READ(prev, __state), pid;
	struct guard g;
	long err;
	int c;

	if (!enter(&g, &c, PAIR_NONE, false))
		return 0;
	pid = BPF_CORE_READ(next, pid);
	if (bpf_map_lookup_elem(&blocked, &pid))
		guarded_delete(&g, &blocked, &pid);
	if (preempt || !(state & TASK_UNINTERRUPTIBLE) || (state & TASK_NOLOAD))
		return 0;
	pid = BPF_CORE_READ(prev, pid);
	entry.since_ns = bpf_ktime_get_ns();
	entry.tgid = BPF_CORE_READ(prev, tgid);
	err = guarded_update(&g, &blocked, &pid, &entry);
	if (err && err != -17)
		__sync_fetch_and_add(&blocked_dropped, 1);
	return 0;
}
