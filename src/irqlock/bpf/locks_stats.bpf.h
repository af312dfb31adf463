// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, statistics: per lock (counts, totals, maxima, log-linear histograms of hold
 * and wait, its first holder) and per (task, lock) (a count and the first stack), and the
 * count of every acquisition seen, kept or not.
 *
 * Hooks: get_stats() and count_holder() at an acquisition, record() where a hold or a
 * wait ends, count_seen() once per acquisition.
 */

/* Sizes set by user space before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lock_stats);
} locks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct holder_key);
	__type(value, struct holder);
} holders SEC(".maps");

/* Acquisitions seen (every lock, whether its statistics are kept or not), per CPU: the
 * share that the locks user space shows cover. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} acquisitions_seen SEC(".maps");

/* Templates for new entries (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lock_stats);
} new_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct holder);
} new_holder SEC(".maps");

static __always_inline __u32 hist_bucket(__u64 v)
{
	__u64 x = v;
	__u32 e = 0;

	if (v < 8)
		return v;
	if (x >> 32) { e += 32; x >>= 32; }
	if (x >> 16) { e += 16; x >>= 16; }
	if (x >> 8) { e += 8; x >>= 8; }
	if (x >> 4) { e += 4; x >>= 4; }
	if (x >> 2) { e += 2; x >>= 2; }
	if (x >> 1) { e += 1; }
	if (e > HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	return (e - 2) * 8 + ((v >> (e - HIST_SUB_BITS)) & 7);
}

/* *max = max(*max, v), exactly, however many CPUs record at once. */
static __always_inline void raise_max(__u64 *max, __u64 v)
{
	__u64 seen, cur = *max;

	for (int i = 0; i < 8 && v > cur; i++) {
		seen = __sync_val_compare_and_swap(max, cur, v);
		if (seen == cur)
			break;
		cur = seen;
	}
}

static __always_inline void record(__u64 *total, __u64 *max, __u32 *hist, __u64 ns)
{
	__u32 b = hist_bucket(ns);

	__sync_fetch_and_add(total, ns);
	raise_max(max, ns);
	if (b < HIST_BUCKETS)
		__sync_fetch_and_add(&hist[b], 1);
}

static __always_inline void fill_use(void *ctx, struct lock_use *u, __u64 id)
{
	u->pid = (__u32)id;
	u->tgid = id >> 32;
	bpf_get_current_comm(u->comm, sizeof(u->comm));
	u->stack_bytes = bpf_get_stack(ctx, u->stack, STACK_BYTES, 0);
}

/* The lock's statistics, made if new (with its first holder): `now` is when the event
 * that needs them happened. */
static __always_inline struct lock_stats *get_stats(void *ctx, struct guard *g, __u64 lock,
						    __u32 kind, __u64 id, __u64 now,
						    struct lock_class *cls)
{
	bool made;
	struct lock_stats *s = lookup_or_make(g, &locks, &lock, &new_stats, &locks_dropped, &made);

	if (s && made) {
		s->kind = kind;
		s->first_pid = (__u32)id;
		s->first_tgid = id >> 32;
		s->created_ns = now;
		s->born_ns = now;
		if (cls)	/* known already */
			s->cls = *cls;
		else
			class_of(g, lock, &s->cls);
		bpf_get_current_comm(s->first_comm, sizeof(s->first_comm));
		s->first_stack_bytes = bpf_get_stack(ctx, s->first_stack, STACK_BYTES, 0);
	}
	return s;
}

static __always_inline void count_holder(void *ctx, struct guard *g, __u64 lock, __u64 id)
{
	struct holder_key key = { .lock = lock, .pid = (__u32)id };
	bool made;
	struct holder *h = lookup_or_make(g, &holders, &key, &new_holder, &holders_dropped, &made);

	if (!h)
		return;
	if (made) {
		h->tgid = id >> 32;
		bpf_get_current_comm(h->comm, sizeof(h->comm));
		h->stack_bytes = bpf_get_stack(ctx, h->stack, STACK_BYTES, 0);
	}
	__sync_fetch_and_add(&h->acquisitions, 1);
}

static __always_inline void count_seen(void)
{
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&acquisitions_seen, &zero);

	if (seen)
		*seen += 1;	/* this CPU's own slot: no other writer */
}
