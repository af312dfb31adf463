// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, lock order (irqlock deadlock): an edge from every lock this context holds
 * to the one just taken, between the locks and between their classes, with who made it
 * first and where; and the frees that make a slab object's locks other locks (an edge
 * made before a free was the freed object's).
 *
 * Hook: order_acquired() at an acquisition that can wait (not a trylock).
 */

/* held -> acquired, with who made the edge first and the acquiring stack */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct edge_key);
	__type(value, struct edge_use);
} edges SEC(".maps");

/* class(held) -> class(acquired): lockdep's graph, between classes of locks */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct class_edge_key);
	__type(value, struct class_edge);
} class_edges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct class_edge);
} new_class_edge SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_use);
} new_edge SEC(".maps");

/* Who makes an edge from `held` to a lock of class `cls`, and where this task took `held`. */
static __always_inline void fill_edge(void *ctx, struct edge_use *e, struct held_lock *held,
				      struct lock_class *cls, __u64 id)
{
	struct holder_key holder = { .lock = held->lock, .pid = (__u32)id };
	struct holder *h;

	fill_use(ctx, &e->use, id);
	e->held_cls = held->cls;
	e->acquired_cls = *cls;
	h = bpf_map_lookup_elem(&holders, &holder);
	e->held_stack_bytes = h ? h->stack_bytes : -1;
	if (h)
		__builtin_memcpy(e->held_stack, h->stack, sizeof(e->held_stack));
}

/* The edge held -> acquired, made anew where either lock has been born since (its memory
 * freed and reused): the edge then is these objects', not the ones before. */
static __always_inline void note_edge(void *ctx, struct guard *g, struct held_lock *held,
				      __u64 lock, struct lock_class *cls, __u64 id, __u64 born)
{
	struct edge_key key = { .held = held->lock, .acquired = lock };
	bool made;
	struct edge_use *e = lookup_or_make(g, &edges, &key, &new_edge, &edges_dropped, &made);

	if (!e || (!made && e->held_born_ns == held->born_ns && e->acquired_born_ns == born))
		return;
	fill_edge(ctx, e, held, cls, id);
	e->held_born_ns = held->born_ns;
	e->acquired_born_ns = born;
}

/* The first edge class(held) -> class(acquired), with its two instances. */
static __always_inline void note_class_edge(void *ctx, struct guard *g, struct held_lock *held,
					    __u64 lock, struct lock_class *cls, __u64 id)
{
	struct class_edge_key key = { .held = held->cls, .acquired = *cls };
	bool made;
	struct class_edge *e = lookup_or_make(g, &class_edges, &key, &new_class_edge,
					      &class_edges_dropped, &made);

	if (!e || !made)
		return;
	e->held_lock = held->lock;
	e->acquired_lock = lock;
	fill_edge(ctx, &e->edge, held, cls, id);
}

/* An edge from held entry i to the lock just taken, between the locks and between their
 * classes (two locks of one class, as double_rq_lock takes them, order nothing between
 * classes). */
static long edge_from_held(__u32 i, void *data)
{
	struct held_walk *w = data;
	struct held_stack *st = w->st;
	struct held_lock *held;

	if (i >= MAX_HELD || i >= st->depth)
		return 1;
	held = &st->locks[i];
	if (held->lock == w->lock)
		return 0;
	note_edge(w->ctx, w->g, held, w->lock, w->cls, w->id, w->born);
	if (!same_class(&held->cls, w->cls) && w->cls->cache != CLASS_ANONYMOUS &&
	    held->cls.cache != CLASS_ANONYMOUS)
		note_class_edge(w->ctx, w->g, held, w->lock, w->cls, w->id);
	return 0;
}

/* An edge from every lock this context still holds to the one just taken. */
static __always_inline void edges_from(void *ctx, struct guard *g, struct held_stack *st,
				       struct returned_frames *dead, __u64 lock,
				       struct lock_class *cls, __u64 id, __u64 born)
{
	struct held_walk w = { .ctx = ctx, .g = g, .st = st, .dead = dead, .cls = cls,
			       .lock = lock, .id = id, .born = born };

	bpf_loop(MAX_HELD, drop_if_released, &w, 0);
	bpf_loop(MAX_HELD, edge_from_held, &w, 0);
}

/* The lock `lock` of class `cls` was just taken in context c: an edge from each lock this
 * context (and, in task context, this task) holds to it. */
static __always_inline void order_acquired(void *ctx, struct guard *g, int c, __u64 lock,
					   struct lock_class *cls, __u64 id, __u64 born)
{
	struct returned_frames dead = returned_frames(ctx);
	__u32 key = c, pid = (__u32)id;
	struct held_stack *held = bpf_map_lookup_elem(&cpu_held, &key);

	if (held)
		edges_from(ctx, g, held, &dead, lock, cls, id, born);
	held = c == CONTEXT_TASK ? bpf_map_lookup_elem(&task_held, &pid) : NULL;
	if (held)
		edges_from(ctx, g, held, &dead, lock, cls, id, born);
}

/* ---- frees: a slab object's locks are other locks once its memory is reused ------- *
 * (irqlock deadlock only) A free stamps the locks seen in objects of its cache with a new
 * born_ns: order edges made before it were the freed object's, and a cycle through edges
 * that saw one lock born at two times is not one between locks that coexisted. */
static __always_inline void stamp_freed(__u64 cache, __u64 object)
{
	struct cache_info *info = bpf_map_lookup_elem(&caches, &cache);
	struct lock_stats *s;
	__u64 now, key;

	if (!info)
		return;	/* no lock of this cache taken while we watched */
	now = bpf_ktime_get_ns();
	for (__u32 i = 0; i < CACHE_LOCK_OFFSETS; i++) {
		if (i >= info->nr_lock_offsets)
			break;
		key = object + info->lock_offsets[i];
		s = bpf_map_lookup_elem(&locks, &key);
		if (s)
			s->born_ns = now;
	}
}

static __always_inline void kfreed(__u64 addr)
{
	__u64 object = 0;
	struct kmem_cache *cache = slab_object_of(addr, &object);

	if (cache && object == addr)
		stamp_freed((__u64)cache, object);
}

SEC("fentry/kmem_cache_free")
int BPF_PROG(kmem_cache_free_entry, struct kmem_cache *cache, void *object)
{
	stamp_freed(as_number(cache), as_number(object));
	return 0;
}

SEC("kprobe/kmem_cache_free")
int BPF_KPROBE(kmem_cache_free_kprobe, struct kmem_cache *cache, void *object)
{
	stamp_freed(as_number(cache), as_number(object));
	return 0;
}

/* (its argument by helper: 6.1's verifier lets a program read no `const void *` argument) */
SEC("fentry/kfree")
int BPF_PROG(kfree_entry)
{
	__u64 object = 0;

	if (!bpf_get_func_arg(ctx, 0, &object))
		kfreed(object);
	return 0;
}

SEC("kprobe/kfree")
int BPF_KPROBE(kfree_kprobe, const void *object) { kfreed(as_number(object)); return 0; }
