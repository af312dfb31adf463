// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, its guard: which calls a program handles, and our own map updates.
 *
 * A program ignores NMI, a paused tracer (control), irqlock's own process and the lock
 * calls its own map updates make: while it updates, it holds a slot of the context's busy
 * tags with its pid and the lock-function pair it traces, so the nested calls tell
 * themselves from another task's (which may run here while our program is preempted).
 * What the kernel skips of ours because of our own update is counted apart (own_recursion,
 * own_acquire_misses) so that user space can tell it from a lost lock call.
 *
 * Hook: enter() at the start of every program; guarded_update/delete and lookup_or_make
 * for every map change.
 */

/* A context's busy tags: a slot per program of ours updating a map there, its value
 * (pid + 1) << PAIR_BITS | pair.  A slot, not one flag: where trampolines are preemptible
 * (preempt=full, PREEMPT_RT) another task's program may start an update on this CPU while
 * ours is preempted in its own, and a flag it overwrote would leave our update's nested
 * lock calls unrecognised -- run inside the map's free-list lock, such a call inserting
 * into the same map spins on that lock forever (seen as an RCU stall on 6.12). */
#define GUARD_SLOTS 4
struct busy_tags {
	__u32 tag[GUARD_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CONTEXTS);
	__type(key, __u32);
	__type(value, struct busy_tags);
} busy SEC(".maps");

/* Map updates not made because every slot was held (that many of our programs preempted
 * mid-update on one CPU): an entry not made, counted as its map's drop too. */
__u64 guard_full = 0;

/* control[0] != 0: user space is deleting entries (a new interval), or putting the
 * probes on or taking them off one by one: do nothing.
 * A delete holds the map's free-list lock while it calls _raw_spin_lock, which runs
 * our program, which must not then insert into the same map: it would spin on the
 * lock its own CPU holds.  An array update takes no lock, so setting this is safe. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} control SEC(".maps");

static __always_inline int context(void)
{
	int pc = this_cpu_preempt_count();

	if (pc & PC_NMI)
		return CONTEXT_NMI;
	if (pc & PC_HARDIRQ)
		return CONTEXT_HARDIRQ;
	if (pc & PC_SOFTIRQ_SERVING)
		return CONTEXT_SOFTIRQ;
	return CONTEXT_TASK;
}

/* A program's guard: its context's busy tags and the tag it holds there while it updates. */
struct guard {
	struct busy_tags *busy;
	__u32 tag;
};

/* The busy slot whose tag is this task's (its own update is going on), or NULL. */
static __always_inline __u32 *own_slot(struct busy_tags *busy, __u32 tag)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		__u32 held = *(volatile __u32 *)&busy->tag[i];

		if (held && (held >> PAIR_BITS) == (tag >> PAIR_BITS))
			return &busy->tag[i];
	}
	return NULL;
}

/* Whether to handle this call (else it is our own, or in NMI, or paused: ignore it);
 * fills the guard for the map updates the program makes.  `releasing`: the call is a
 * release, whose partner skipped by our update (see own_recursion) is an acquire. */
static __always_inline bool enter(struct guard *g, int *ctx_out, __u32 pair, bool releasing)
{
	int c = context();
	__u32 key = 0, tag = (((__u32)bpf_get_current_pid_tgid() + 1) << PAIR_BITS) | pair;
	__u32 *paused = bpf_map_lookup_elem(&control, &key), *own;
	struct busy_tags *tags;

	if (c == CONTEXT_NMI || !paused || *paused)
		return false;
	if ((bpf_get_current_pid_tgid() >> 32) == own_tgid) {
		__sync_fetch_and_add(&own_process_skipped, 1);
		return false;
	}
	key = c;
	tags = bpf_map_lookup_elem(&busy, &key);
	if (!tags)
		return false;
	own = own_slot(tags, tag);
	if (own) {
		__sync_fetch_and_add(&self_skipped, 1);
		if (pair && (*own & ((1U << PAIR_BITS) - 1)) == pair) {
			__sync_fetch_and_add(&own_recursion, 1);
			if (releasing)
				__sync_fetch_and_add(&own_acquire_misses, 1);
		}
		return false;
	}
	g->busy = tags;
	g->tag = tag;
	*ctx_out = c;
	return true;
}

/* A free busy slot, now holding our tag; NULL (counted) when all are held.  Atomic: a task
 * that preempts us between a read and a write would take the same slot. */
static __always_inline __u32 *claim_slot(struct guard *g)
{
	for (int i = 0; i < GUARD_SLOTS; i++)
		if (__sync_val_compare_and_swap(&g->busy->tag[i], 0, g->tag) == 0)
			return &g->busy->tag[i];
	__sync_fetch_and_add(&guard_full, 1);
	return NULL;
}

/* kprobe mode: our update made `calls` lock calls, each missed by the acquire's kprobe and
 * kretprobe and by the release's kprobe: one acquisition each (see acquisitions_missed). */
static __always_inline void own_lock_calls_missed(__u32 calls)
{
	if (!own_misses_per_lock_call)
		return;
	__sync_fetch_and_add(&own_recursion, own_misses_per_lock_call * calls);
	__sync_fetch_and_add(&own_acquire_misses, calls);
}

static __always_inline long guarded_update(struct guard *g, void *map, void *key, void *value)
{
	__u32 *slot = claim_slot(g);
	long err;

	if (!slot)
		return -16;	/* EBUSY */
	err = bpf_map_update_elem(map, key, value, BPF_NOEXIST);
	*(volatile __u32 *)slot = 0;
	/* The bucket lock is always taken; the free list's only when an entry was made. */
	own_lock_calls_missed(err ? 1 : 2);
	return err;
}

static __always_inline void guarded_delete(struct guard *g, void *map, void *key)
{
	__u32 *slot = claim_slot(g);
	long err;

	if (!slot)
		return;
	err = bpf_map_delete_elem(map, key);
	*(volatile __u32 *)slot = 0;
	own_lock_calls_missed(err ? 1 : 2);	/* the bucket lock; the free list's if it was there */
}

static __always_inline bool filtered_out(__u64 lock, __u64 id)
{
	if (target_lock && lock != target_lock)
		return true;
	return target_tgid >= 0 && (id >> 32) != target_tgid;
}

/* The entry of `key` in `map`, made from the zeroed entry of `templates` where missing;
 * *made says this call made it, for the caller to fill in place (a template written to could
 * be changed under a preempted program).  NULL if it did not fit (counted in *dropped). */
static __always_inline void *lookup_or_make(struct guard *g, void *map, void *key,
					    void *templates, __u64 *dropped, bool *made)
{
	void *entry = bpf_map_lookup_elem(map, key), *zeros;
	__u32 zero = 0;
	long err;

	*made = false;
	if (entry)
		return entry;
	zeros = bpf_map_lookup_elem(templates, &zero);
	if (!zeros)
		return NULL;
	err = guarded_update(g, map, key, zeros);
	if (err && err != -17 /* EEXIST: another CPU was first */) {
		__sync_fetch_and_add(dropped, 1);
		return NULL;
	}
	*made = !err;
	return bpf_map_lookup_elem(map, key);
}
