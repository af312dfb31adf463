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
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "locks.h"
#include "preempt_count.h"

#define STACK_BYTES (LOCKS_MAX_STACK * sizeof(__u64))
#define CONTEXTS 3		/* task, softirq, hardirq; NMI is not traced */
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);			/* pid */
	__type(value, struct held_stack);	/* mutexes and rwsems held */
} task_held SEC(".maps");

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
	__type(value, struct held_stack);	/* spinlocks and rwlocks held */
} cpu_held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CONTEXTS);
	__type(key, __u32);
	__type(value, struct wait_state);	/* a spinning wait */
} cpu_wait SEC(".maps");

/* busy[c]: a program of ours in context c is updating a map.  The value is its tag:
 * (pid + 1) << PAIR_BITS | pair.  The pid tells our update's lock calls from another
 * task's (that task may run on this CPU while our program is preempted). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CONTEXTS);
	__type(key, __u32);
	__type(value, __u32);
} busy SEC(".maps");

/* Acquisitions seen (every lock, whether its statistics are kept or not), per CPU: the
 * share that the locks user space shows cover. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} acquisitions_seen SEC(".maps");

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

/* The slab caches classes were found in: their names, sizes, whether merged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);			/* struct kmem_cache * */
	__type(value, struct cache_info);
} caches SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_use);
} new_edge SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct held_stack);
} new_stack SEC(".maps");

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

/* 0 task, 1 softirq, 2 hardirq, -1 NMI (from preempt_count's bits). */
static __always_inline int context(void)
{
	int pc = this_cpu_preempt_count();

	if (pc & 0x00f00000)
		return -1;
	if (pc & 0x000f0000)
		return 2;
	if (pc & 0x00000100)
		return 1;
	return 0;
}

/* A program's guard: the context's busy flag and the tag it sets there while it updates. */
struct guard {
	__u32 *flag;
	__u32 tag;
};

/* Whether to handle this call (else it is our own, or in NMI, or paused: ignore it);
 * fills the guard for the map updates the program makes.  `releasing`: the call is a
 * release, whose partner skipped by our update (see own_recursion) is an acquire. */
static __always_inline bool enter(struct guard *g, int *ctx_out, __u32 pair, bool releasing)
{
	int c = context();
	__u32 key = 0, tag = (((__u32)bpf_get_current_pid_tgid() + 1) << PAIR_BITS) | pair;
	__u32 *flag, *paused = bpf_map_lookup_elem(&control, &key);

	if (c < 0 || !paused || *paused)
		return false;
	if ((bpf_get_current_pid_tgid() >> 32) == own_tgid) {
		__sync_fetch_and_add(&own_process_skipped, 1);
		return false;
	}
	key = c;
	flag = bpf_map_lookup_elem(&busy, &key);
	if (!flag)
		return false;
	if (*flag && (*flag >> PAIR_BITS) == (tag >> PAIR_BITS)) {
		__sync_fetch_and_add(&self_skipped, 1);
		if (pair && (*flag & ((1U << PAIR_BITS) - 1)) == pair) {
			__sync_fetch_and_add(&own_recursion, 1);
			if (releasing)
				__sync_fetch_and_add(&own_acquire_misses, 1);
		}
		return false;
	}
	g->flag = flag;
	g->tag = tag;
	*ctx_out = c;
	return true;
}

/* kprobe mode: our update made `calls` lock calls, each missed by the acquire's kprobe and
 * kretprobe and by the release's kprobe. */
static __always_inline void own_lock_calls_missed(__u32 calls)
{
	if (!own_misses_per_lock_call)
		return;
	__sync_fetch_and_add(&own_recursion, own_misses_per_lock_call * calls);
	__sync_fetch_and_add(&own_acquire_misses, (own_misses_per_lock_call - 1) * calls);
}

/* Another task's tag is put back: its update may have been preempted, not finished. */
static __always_inline long guarded_update(struct guard *g, void *map, void *key, void *value)
{
	__u32 before = *g->flag;
	long err;

	*g->flag = g->tag;
	err = bpf_map_update_elem(map, key, value, BPF_NOEXIST);
	*g->flag = before;
	/* The bucket lock is always taken; the free list's only when an entry was made. */
	own_lock_calls_missed(err ? 1 : 2);
	return err;
}

static __always_inline void guarded_delete(struct guard *g, void *map, void *key)
{
	__u32 before = *g->flag;
	long err;

	*g->flag = g->tag;
	err = bpf_map_delete_elem(map, key);
	*g->flag = before;
	own_lock_calls_missed(err ? 1 : 2);	/* the bucket lock; the free list's if it was there */
}

/* Whether a holder of this kind can sleep and migrate: its held stack is the task's. */
static __always_inline bool sleeping_kind(__u32 kind)
{
	return kind == LOCK_MUTEX || kind == LOCK_RWSEM ||
	       (rt_kernel && (kind == LOCK_SPIN || kind == LOCK_RW));
}

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

static __always_inline void fill_use(void *ctx, struct lock_use *u, __u64 id)
{
	u->pid = (__u32)id;
	u->tgid = id >> 32;
	bpf_get_current_comm(u->comm, sizeof(u->comm));
	u->stack_bytes = bpf_get_stack(ctx, u->stack, STACK_BYTES, 0);
}

/* The first use of `key` in `map` (hardirq use, irqs-on hold), with a stack. */
static __always_inline void note_use(void *ctx, struct guard *g, void *map, void *key, __u64 id,
				     __u64 *dropped)
{
	bool made;
	struct lock_use *u = lookup_or_make(g, map, key, &new_use, dropped, &made);

	if (u && made)
		fill_use(ctx, u, id);
}

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

static __always_inline void count_seen(void)
{
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&acquisitions_seen, &zero);

	if (seen)
		*seen += 1;	/* this CPU's own slot: no other writer */
}

static __always_inline void acquired_in(void *ctx, struct guard *g, int c, __u64 lock, __u64 id,
					__u32 kind, __u32 mode, bool order)
{
	struct lock_class cls = { .cache = CLASS_ANONYMOUS, .where = lock };
	struct lock_stats *s;
	struct held_stack *st;
	__u64 now, born;

	now = bpf_ktime_get_ns();
	if (track_order) {	/* each time: the address may be another object's by now */
		struct lock_class found = cls;

		class_of(g, lock, &found);
		/* Copied as bytes the verifier does not know: else each of class_of's outcomes
		 * (static, anonymous, a cache) is a state of its own in all the code below, and
		 * loading `deadlock` walks that code once for each. */
		bpf_probe_read_kernel(&cls, sizeof(cls), &found);
	}
	s = get_stats(ctx, g, lock, kind, id, now, track_order ? &cls : NULL);
	born = s ? s->born_ns : now;	/* (a new entry is born now) */
	/* Edges first: the new lock is not on the held stack yet. */
	if (track_order && order) {
		struct returned_frames dead = returned_frames(ctx);
		__u32 key = c, pid = (__u32)id;
		struct held_stack *held = bpf_map_lookup_elem(&cpu_held, &key);

		if (held)
			edges_from(ctx, g, held, &dead, lock, &cls, id, born);
		held = c == 0 ? bpf_map_lookup_elem(&task_held, &pid) : NULL;
		if (held)
			edges_from(ctx, g, held, &dead, lock, &cls, id, born);
	}
	st = mode == MODE_RELEASE_UNSEEN ? NULL : held_stack(g, c, kind, (__u32)id, true);
	if (st)
		push_held(st, lock, now, kind, mode, &cls, born);
	if (track_irq_safety && c == 2)
		note_use(ctx, g, &hardirq_locks, &lock, id, &irq_uses_dropped);
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
	held_with_irqs_on(ctx, &g, 0);
	if (pc & 0x00000100)
		held_with_irqs_on(ctx, &g, 1);
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

/* Where a hardirq starts: nothing held in hardirq context yet, and the interrupted
 * context had interrupts on. */
static __always_inline void hardirq_starts(void *ctx)
{
	forget_stale(2);
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
int BPF_PROG(on_softirq_entry) { forget_stale(1); return 0; }

/* A task enters a system call holding no lock (lockdep reports one still held on the way
 * back to user space as a bug), and so does this CPU's task context: what our stacks hold
 * there are releases we missed, maybe a system call ago -- a reader's, which the lock's
 * count cannot tell from another reader's. */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();

	forget_stale(0);
	forget(bpf_map_lookup_elem(&task_held, &pid));
	return 0;
}

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
	} else if (c == 0) {
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
