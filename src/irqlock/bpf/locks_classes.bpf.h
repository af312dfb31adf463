// SPDX-License-Identifier: GPL-2.0
/*
 * locks.bpf.c, lock classes: a lock in a slab object is of class (cache, offset in the
 * object), a static or per-CPU lock its own class, any other lock anonymous.
 *
 * Hook: class_of(), called when a lock's statistics are made and, for irqlock deadlock,
 * at every acquisition (the address may be another object's by now).
 */

/* The slab caches classes were found in: their names, sizes, whether merged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);			/* struct kmem_cache * */
	__type(value, struct cache_info);
} caches SEC(".maps");

/* ---- lock classes -------------------------------------------------------------- *
 * A lock in a slab object belongs to its cache at its offset in the object, found from the
 * address as drgn's slab_object_info does: the struct page of the address in the direct
 * map, its compound head, whether it is a slab page, the struct slab over it, then
 * slab_cache; the first object starts red_left_pad into the slab and each is `size` long.
 * Where the layout cannot be read (no kallsyms for it, a kernel without struct slab or a
 * known slab mark), a lock's class is its address and classes_unavailable says so.  The
 * object holding a lock is alive while the lock is taken, so the page is a slab page then. */

/* Randomized at boot, not in BTF: weak, so that a kernel whose kallsyms lacks them loads. */
extern const void page_offset_base __ksym __weak;
extern const void vmemmap_base __ksym __weak;
extern const void high_memory __ksym __weak;
extern const void __per_cpu_offset __ksym __weak;
extern const void pcpu_unit_size __ksym __weak;

#define PAGE_SHIFT 12
#define KERNEL_MAP_START 0xffffffff80000000ULL	/* the kernel image, then modules */
#define MAX_CPUS 256
const volatile __u32 nr_cpus = 1;	/* possible CPUs: __per_cpu_offset[0 .. nr_cpus) */

/* Read once (the first program to need them), then kept: they do not change after boot. */
struct memory_layout {
	__u64 direct_start;	/* page_offset_base */
	__u64 direct_end;	/* high_memory: the end of the directly mapped memory */
	__u64 percpu_start;	/* the first per-CPU chunk: every CPU's static per-CPU variables */
	__u64 percpu_end;
	__u64 vmemmap;		/* vmemmap_base: struct page of pfn 0 (set last: the layout is read) */
} layout = {};

/* Where the CPUs' copies of the static per-CPU variables are (the first chunk). */
static __always_inline void read_percpu_area(void)
{
	__u64 start = ~0ULL, end = 0, base;
	__u32 unit = 0;

	if (!&__per_cpu_offset || !&pcpu_unit_size)
		return;
	bpf_probe_read_kernel(&unit, sizeof(unit), &pcpu_unit_size);
	for (__u32 cpu = 0; cpu < MAX_CPUS && cpu < nr_cpus; cpu++) {
		base = 0;
		bpf_probe_read_kernel(&base, sizeof(base), (void *)&__per_cpu_offset + cpu * 8);
		if (!base)
			continue;
		if (base < start)
			start = base;
		if (base + unit > end)
			end = base + unit;
	}
	if (unit && end > start) {
		layout.percpu_start = start;
		layout.percpu_end = end;
	}
}

static __always_inline __u64 read_word(const void *p)
{
	__u64 v = 0;

	if (p)
		bpf_probe_read_kernel(&v, sizeof(v), p);
	return v;
}

/* A slab page is marked by a page flag to 6.9 (PG_slab), then by a page type: 6.10 and 6.11
 * clear the type's bit in page_type (PG_slab of enum pagetype), 6.12 on put the type in its
 * top byte (PGTY_slab).  vmlinux.h is 6.1's: the page type's names are made here, and CO-RE
 * matches them by the part before "___". */
enum pagetype___irqlock {
	PGTY_slab___irqlock = 0xf5,
	PG_slab___irqlock = 0x00001000,
	PAGE_TYPE_BASE___irqlock = 0xf0000000,
};

struct page___irqlock {
	unsigned int page_type;
} __attribute__((preserve_access_index));

static __always_inline bool slab_mark_known(void)
{
	return bpf_core_enum_value_exists(enum pageflags, PG_slab) ||
	       bpf_core_enum_value_exists(enum pagetype___irqlock, PGTY_slab___irqlock) ||
	       (bpf_core_enum_value_exists(enum pagetype___irqlock, PG_slab___irqlock) &&
		bpf_core_enum_value_exists(enum pagetype___irqlock, PAGE_TYPE_BASE___irqlock));
}

static __always_inline bool is_slab_page(__u64 page)
{
	__u32 type, bit, base;

	if (bpf_core_enum_value_exists(enum pageflags, PG_slab))
		return BPF_CORE_READ((struct page *)page, flags) &
		       (1ULL << bpf_core_enum_value(enum pageflags, PG_slab));
	type = BPF_CORE_READ((struct page___irqlock *)page, page_type);
	if (bpf_core_enum_value_exists(enum pagetype___irqlock, PGTY_slab___irqlock))
		return type >> 24 == bpf_core_enum_value(enum pagetype___irqlock, PGTY_slab___irqlock);
	if (bpf_core_enum_value_exists(enum pagetype___irqlock, PG_slab___irqlock) &&
	    bpf_core_enum_value_exists(enum pagetype___irqlock, PAGE_TYPE_BASE___irqlock)) {
		bit = bpf_core_enum_value(enum pagetype___irqlock, PG_slab___irqlock);
		base = bpf_core_enum_value(enum pagetype___irqlock, PAGE_TYPE_BASE___irqlock);
		return (type & (base | bit)) == base;
	}
	return false;
}

static __always_inline bool read_layout(void)
{
	__u64 start, end, vmemmap;

	if (layout.vmemmap)
		return true;
	if (!bpf_core_type_exists(struct slab) || !slab_mark_known())
		goto unavailable;
	start = read_word(&page_offset_base);
	end = read_word(&high_memory);
	vmemmap = read_word(&vmemmap_base);
	if (!start || end <= start || !vmemmap)
		goto unavailable;
	layout.direct_start = start;
	layout.direct_end = end;
	read_percpu_area();
	layout.vmemmap = vmemmap;
	return true;
unavailable:
	classes_unavailable = 1;
	return false;
}

/* `where` among the offsets of the cache's locks (a free of an object stamps them). */
static __always_inline void note_lock_offset(struct cache_info *info, __u32 where)
{
	__u32 n = info->nr_lock_offsets;

	for (__u32 i = 0; i < CACHE_LOCK_OFFSETS; i++) {
		if (i >= n)
			break;
		if (info->lock_offsets[i] == where)
			return;
	}
	if (n >= CACHE_LOCK_OFFSETS) {
		if (!(info->flags & CACHE_OFFSETS_FULL)) {
			info->flags |= CACHE_OFFSETS_FULL;
			__sync_fetch_and_add(&lock_offsets_dropped, 1);
		}
		return;
	}
	info->lock_offsets[n] = where;
	info->nr_lock_offsets = n + 1;
}

/* The cache of a lock at `where` in its objects: its name and sizes read when first seen. */
static __always_inline void note_cache(struct guard *g, struct kmem_cache *cache, __u32 where)
{
	__u64 key = (__u64)cache;
	struct cache_info info = {}, *known = bpf_map_lookup_elem(&caches, &key);
	long err;

	if (known) {
		note_lock_offset(known, where);
		return;
	}
	bpf_probe_read_kernel_str(info.name, sizeof(info.name), BPF_CORE_READ(cache, name));
	info.size = BPF_CORE_READ(cache, size);
	info.object_size = BPF_CORE_READ(cache, object_size);
	info.refcount = BPF_CORE_READ(cache, refcount);
	info.flags = BPF_CORE_READ(cache, ctor) ? CACHE_HAS_CTOR : 0;
	info.nr_lock_offsets = 1;
	info.lock_offsets[0] = where;
	err = guarded_update(g, &caches, &key, &info);
	if (err && err != -17)
		__sync_fetch_and_add(&caches_dropped, 1);
}

/* The slab object `addr` is in: its cache, and where it starts (NULL if `addr` is not in
 * one: the kernel image and modules, vmalloc, page allocations, per-CPU areas). */
static __always_inline struct kmem_cache *slab_object_of(__u64 addr, __u64 *object)
{
	__u64 page_size = bpf_core_type_size(struct page), page, head, first;
	struct kmem_cache *cache;
	__u32 size, pad = 0;

	if (!read_layout() || addr < layout.direct_start || addr >= layout.direct_end)
		return NULL;
	page = layout.vmemmap + ((addr - layout.direct_start) >> PAGE_SHIFT) * page_size;
	head = BPF_CORE_READ((struct page *)page, compound_head);
	if (head & 1)
		page = head - 1;
	if (!is_slab_page(page))
		return NULL;
	cache = BPF_CORE_READ((struct slab *)page, slab_cache);
	if ((__u64)cache <= CLASS_ANONYMOUS)
		return NULL;
	size = BPF_CORE_READ(cache, size);
	if (bpf_core_field_exists(cache->red_left_pad))
		pad = BPF_CORE_READ(cache, red_left_pad);
	first = layout.direct_start + ((page - layout.vmemmap) / page_size << PAGE_SHIFT) + pad;
	if (!size || addr < first)
		return NULL;
	*object = addr - (addr - first) % size;
	return cache;
}

/* Pointers as numbers (map keys, sums, bit masks): the verifier lets a typed pointer be
 * none of these.  0 if it cannot be read. */
static __always_inline __u64 as_number(const void *p)
{
	__u64 number = 0;

	bpf_probe_read_kernel(&number, sizeof(number), &p);
	return number;
}

/* The class of the lock whose key is `key` (see struct lock_class). */
static __always_inline void class_of(struct guard *g, __u64 key, struct lock_class *cls)
{
	__u64 number, addr, object = 0;
	struct kmem_cache *cache;

	cls->where = key;
	/* The key may be the traced function's argument, a pointer the verifier allows no bit
	 * operations on. */
	number = as_number((const void *)key);
	addr = number & ~RAW_LOCK_TAG;
	cls->cache = addr >= KERNEL_MAP_START ? CLASS_STATIC : CLASS_ANONYMOUS;
	if (read_layout() && addr >= layout.percpu_start && addr < layout.percpu_end)
		cls->cache = CLASS_STATIC;	/* named by kallsyms too */
	cache = slab_object_of(addr, &object);
	if (!cache)
		return;
	cls->cache = (__u64)cache;
	cls->where = (addr - object) | (number & RAW_LOCK_TAG);
	__sync_fetch_and_add(&slab_locks, 1);
	note_cache(g, cache, cls->where);
}

static __always_inline bool same_class(struct lock_class *a, struct lock_class *b)
{
	return a->cache == b->cache && a->where == b->where;
}

/* The class of the lock just taken, into *cls. */
static __always_inline void class_now(struct guard *g, __u64 lock, struct lock_class *cls)
{
	struct lock_class found = *cls;

	class_of(g, lock, &found);
	/* Copied as bytes the verifier does not know: else each of class_of's outcomes (static,
	 * anonymous, a cache) is a state of its own in all the code after, and loading
	 * `deadlock` walks that code once for each. */
	bpf_probe_read_kernel(cls, sizeof(*cls), &found);
}
