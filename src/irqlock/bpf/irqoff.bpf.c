// SPDX-License-Identifier: GPL-2.0
/*
 * IRQ-off (and preempt-off) windows per CPU, from three sources:
 *
 *  - preemptirq tracepoints (irq_disable/irq_enable, preempt_*): exact, every
 *    API.  They fire only on real transitions, so each pair is an outermost window.
 *  - lock paths on kernels without them: the spin/rwlock _irq and _irqsave
 *    functions.  A _lock_irqsave opens a window only if the flags it returns had
 *    interrupts on; an _unlock_irqrestore closes it only if its flags turn them
 *    back on, so nested irqsave gives one window.
 *  - a per-CPU cpu-clock sampler for everything else: the timer cannot fire
 *    while interrupts are off, so a gap between two samples in the same task,
 *    in kernel mode, with no context switch between, is an IRQ-off window whose
 *    length is known to within one sampling period.
 *
 * A lock window can open and then see interrupts come back on through a path
 * that is not traced (spin_unlock + local_irq_restore, say).  Any sign that
 * interrupts are on -- an interrupt or softirq starting, a sampler tick, a
 * context switch -- therefore discards an open lock window as stale (counted),
 * so it cannot grow into a bogus window closed much later by an unrelated unlock.
 *
 * User space keeps the programs of the sources it uses and disables the rest.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "irqoff.h"
#include "preempt_count.h"

#define X86_EFLAGS_IF 0x200
#define STACK_BYTES (IRQOFF_MAX_STACK * sizeof(__u64))

const volatile __u64 threshold_ns = 0;
const volatile __s32 target_tgid = -1;	/* -1: every process */
const volatile __s32 target_cpu = -1;	/* -1: every CPU */
const volatile __s32 own_tgid = -1;	/* irqlock itself: its windows are our own doing */
const volatile __u64 sample_period_ns = 0;
const volatile __u32 nr_cpus = 1;	/* CPUs that may sample: 0 .. nr_cpus - 1 */
const volatile bool capture_disable_stack = true;
const volatile bool sample_softirq = false;
const volatile bool sample_hardirq = false;

struct window_state {
	__u64 start_ns;
	__u64 pending_ns;	/* entry of a _lock_irqsave whose flags are not known yet */
	__u64 pending_lock;
	__u32 pending_depth;	/* _lock_irqsave calls entered and not returned (see below) */
	__u32 pad;
	__u64 lock;		/* the lock whose _irq/_irqsave opened the window */
	__u64 disable_ip;
	__u64 disable_parent_ip;
	__u64 last_end_ns;	/* end of the last exact window: the sampler skips its gap */
	__u64 error_ns;
	__u32 site;		/* enum tick_site (SITE_EXACT for the exact sources) */
	__u32 pid;
	__u32 tgid;
	__u32 source;
	__u32 open;
	__u32 reporting;	/* close_window is sending: its own lock calls must not touch st */
	__s32 disable_stack_bytes;
	char comm[TASK_COMM_LEN];
	__u64 disable_stack[IRQOFF_MAX_STACK];
};

struct sample_state {
	__u64 last_ns;		/* last tick or switch into a task; 0: none (idle) */
	__u64 prev_tick_ns;	/* last tick, whatever it saw */
	__u64 before_tick_ns;	/* the tick before that */
	__u64 bh_last_ns;	/* last tick that saw softirqs off */
	__u64 bh_start_error_ns;	/* half the tick interval the softirq-off window began in */
	__u64 late_max_ns;	/* the latest a tick came after its due time, gaps aside */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KIND_COUNT + 1);	/* + the sampler's own, so it never clobbers a lock's */
	__type(key, __u32);
	__type(value, struct window_state);
} windows SEC(".maps");

#define SAMPLER_SLOT KIND_COUNT

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_state);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");
/* Puts the records' type in the object's BTF, where user space checks its mirror of it
 * (irqlock/bpf/btf.py): nothing else names the type outside a function. */
const struct irqoff_event *irqoff_event_type __attribute__((unused));

__u64 lost_events = 0;		/* ring buffer full */
__u64 unmatched_opens = 0;	/* a window opened while one was open: its end was not seen */
__u64 windows_seen = 0;		/* closed windows, any length */
__u64 stale_windows = 0;	/* lock windows whose end was not traced, discarded */
__u64 own_windows = 0;		/* windows over the threshold in irqlock's own process */
__u64 blind_spans = 0;		/* spans of two periods or more with no tick: see note_blind */
__u64 blind_ns = 0;		/* their total length */

static __always_inline struct window_state *state(__u32 kind)
{
	return bpf_map_lookup_elem(&windows, &kind);
}

/* Capture where interrupts go off before taking the start time, so the stack
 * walk is not counted in the window. */
static __always_inline void capture_disable_site(void *ctx, struct window_state *st)
{
	st->disable_stack_bytes = capture_disable_stack ?
		bpf_get_stack(ctx, st->disable_stack, STACK_BYTES, 0) : -1;
}

/* Who is turning interrupts off: taken before the start time, like the stack. */
static __always_inline void capture_task(struct window_state *st)
{
	__u64 id = bpf_get_current_pid_tgid();

	st->pid = (__u32)id;
	st->tgid = id >> 32;
	bpf_get_current_comm(st->comm, sizeof(st->comm));
}

/* The disable stack and task must already be in st; start_ns 0: now. */
static __always_inline void open_window(struct window_state *st, __u32 source, __u64 start_ns,
					__u64 ip, __u64 parent_ip)
{
	st->open = 1;
	st->error_ns = 0;
	st->site = SITE_EXACT;
	st->source = source;
	st->disable_ip = ip;
	st->disable_parent_ip = parent_ip;
	st->start_ns = start_ns ?: bpf_ktime_get_ns();
}

static __always_inline void open_window_now(void *ctx, __u32 kind, __u32 source, __u64 ip,
					    __u64 parent_ip)
{
	struct window_state *st = state(kind);

	if (!st)
		return;
	if (st->open) {
		/* A tracepoint disable after a disable: the enable between was missed. */
		__sync_fetch_and_add(&unmatched_opens, 1);
	}
	capture_disable_site(ctx, st);
	capture_task(st);
	open_window(st, source, 0, ip, parent_ip);
}

/* Interrupts are on now: an open lock window lost its end to an untraced path. */
static __always_inline void irqs_are_on(void)
{
	struct window_state *st = state(KIND_HARDIRQ);

	if (st && st->open && st->source == SOURCE_LOCK && !st->reporting) {
		st->open = 0;
		__sync_fetch_and_add(&stale_windows, 1);
	}
}

#define MAX_CPUS 256

/* Whether the other CPUs' sampler ticks stopped during this CPU's gap (last, now) too: a
 * hypervisor that paused the whole machine, not interrupts turned off here (they stop one
 * CPU's ticks, not all).  Its late tick may still land after an sti: a stall that ended in
 * a short irqs-off section.  An exact window a stall covers is mostly the stall too.
 * A CPU that ran ticked in (last + period / 2, now - period / 2): one of its two latest
 * ticks is there once the gap is over three periods (two, and how late ticks come).  CPUs
 * whose latest tick is older than the gap (offline) do not count; with none left, or
 * without the sampler, nothing can be told. */
static __always_inline bool machine_stalled(__u64 last, __u64 now)
{
	__u64 from = last + sample_period_ns / 2, to = now - sample_period_ns / 2;
	__u32 zero = 0, me = bpf_get_smp_processor_id(), others = 0;
	struct sample_state *d;

	if (now - last <= 3 * sample_period_ns)
		return false;	/* too short to tell: a running CPU may tick just outside */
	for (__u32 cpu = 0; cpu < MAX_CPUS && cpu < nr_cpus; cpu++) {
		if (cpu == me)
			continue;
		d = bpf_map_lookup_percpu_elem(&samples, &zero, cpu);
		if (!d || d->prev_tick_ns + 2 * sample_period_ns < last)
			continue;
		others++;
		if ((d->prev_tick_ns > from && d->prev_tick_ns < to) ||
		    (d->before_tick_ns > from && d->before_tick_ns < to))
			return false;
	}
	return others > 0;
}

static __always_inline void close_window(void *ctx, struct window_state *st, __u32 kind,
					 __u64 end_ns)
{
	struct irqoff_event *e;
	__u32 cpu;

	if (!st || !st->open)
		return;
	st->open = 0;
	st->last_end_ns = end_ns;
	__sync_fetch_and_add(&windows_seen, 1);
	if (end_ns - st->start_ns < threshold_ns)
		return;
	cpu = bpf_get_smp_processor_id();
	if (target_cpu >= 0 && cpu != target_cpu)
		return;
	if (target_tgid >= 0 && st->tgid != target_tgid)
		return;
	/* Reading our maps takes their locks with interrupts off while our programs run
	 * nested: under emulation that alone makes windows over a millisecond. */
	if (st->tgid == own_tgid) {
		__sync_fetch_and_add(&own_windows, 1);
		return;
	}
	st->reporting = 1;	/* the reserve below takes a spinlock with irqsave */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	st->reporting = 0;
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return;
	}
	e->start_ns = st->start_ns;
	e->end_ns = end_ns;
	e->error_ns = st->error_ns;
	e->disable_ip = st->disable_ip;
	e->disable_parent_ip = st->disable_parent_ip;
	e->pid = st->pid;
	e->cpu = cpu;
	e->kind = kind;
	e->source = st->source;
	e->site = st->site;
	if (st->source != SOURCE_SAMPLE && kind == KIND_HARDIRQ && sample_hardirq &&
	    machine_stalled(st->start_ns, end_ns))
		e->site = SITE_STALL;
	e->disable_stack_bytes = st->disable_stack_bytes;
	__builtin_memcpy(e->comm, st->comm, sizeof(e->comm));
	__builtin_memcpy(e->disable_stack, st->disable_stack, sizeof(e->disable_stack));
	e->enable_stack_bytes = bpf_get_stack(ctx, e->enable_stack, STACK_BYTES, 0);
	bpf_ringbuf_submit(e, 0);
}

/* ---- exact: preemptirq tracepoints ------------------------------------- */

SEC("tp_btf/irq_disable")
int BPF_PROG(tp_irq_disable, unsigned long ip, unsigned long parent_ip)
{
	open_window_now(ctx, KIND_HARDIRQ, SOURCE_TRACEPOINT, ip, parent_ip);
	return 0;
}

SEC("tp_btf/irq_enable")
int BPF_PROG(tp_irq_enable, unsigned long ip, unsigned long parent_ip)
{
	close_window(ctx, state(KIND_HARDIRQ), KIND_HARDIRQ, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/preempt_disable")
int BPF_PROG(tp_preempt_disable, unsigned long ip, unsigned long parent_ip)
{
	open_window_now(ctx, KIND_PREEMPT, SOURCE_TRACEPOINT, ip, parent_ip);
	return 0;
}

SEC("tp_btf/preempt_enable")
int BPF_PROG(tp_preempt_enable, unsigned long ip, unsigned long parent_ip)
{
	close_window(ctx, state(KIND_PREEMPT), KIND_PREEMPT, bpf_ktime_get_ns());
	return 0;
}

/* ---- exact for lock paths: spin/rwlock _irq and _irqsave ------------------ */

#define HARDIRQ_OR_NMI_MASK 0x00ff0000	/* HARDIRQ_MASK | NMI_MASK of preempt_count */
#define SOFTIRQ_MASK 0x0000ff00		/* softirqs disabled or being served */

/* Interrupts are always off in hardirq and NMI context: a lock taken there opens nothing. */
static __always_inline bool in_hardirq_or_nmi(void)
{
	return this_cpu_preempt_count() & HARDIRQ_OR_NMI_MASK;
}

#define PENDING_STALE_NS 10000000ULL	/* 10 ms: an inner call comes within microseconds */

/* A _lock_irqsave can be called between another's entry and return: by another BPF
 * program's map update run from that lock's fexit (the lock tracer's), before ours.  Only
 * the outermost call is the one that may open a window: the depth pairs entries with
 * returns, so an inner call neither takes the pending place nor opens anything. */
static __always_inline void irqsave_entry(void *ctx, void *lock)
{
	struct window_state *st = state(KIND_HARDIRQ);

	/* Nested inside an open window, our own report, or in hardirq where
	 * interrupts are off anyway: keep the state of the task it interrupted. */
	if (!st || st->open || st->reporting || in_hardirq_or_nmi())
		return;
	/* An outer call pending this long lost its return (a program skipped): start anew. */
	if (st->pending_depth && bpf_ktime_get_ns() - st->pending_ns > PENDING_STALE_NS)
		st->pending_depth = 0;
	if (st->pending_depth++)
		return;
	capture_disable_site(ctx, st);
	capture_task(st);
	st->pending_lock = (__u64)lock;
	st->pending_ns = bpf_ktime_get_ns();
}

/* The flags a _lock_irqsave returns are the ones it saved: IF set = it turned irqs off. */
static __always_inline void irqsave_return(__u64 flags, __u64 ip)
{
	struct window_state *st = state(KIND_HARDIRQ);

	if (!st || in_hardirq_or_nmi() || !st->pending_depth)
		return;
	if (--st->pending_depth)
		return;	/* an inner call's return */
	if (!st->open && !st->reporting && (flags & X86_EFLAGS_IF)) {
		st->lock = st->pending_lock;
		open_window(st, SOURCE_LOCK, st->pending_ns, ip, 0);
	}
}

/* Interrupts come back on here.  The window ends only if this is the lock that
 * opened it; another lock's unlock means the window's own end went untraced. */
static __always_inline void lock_window_end(void *ctx, void *lock)
{
	__u64 now = bpf_ktime_get_ns();
	struct window_state *st = state(KIND_HARDIRQ);

	if (!st || !st->open || st->source != SOURCE_LOCK || st->reporting)
		return;
	if (st->lock != (__u64)lock) {
		st->open = 0;
		__sync_fetch_and_add(&stale_windows, 1);
		return;
	}
	close_window(ctx, st, KIND_HARDIRQ, now);
}

static __always_inline void irqrestore(void *ctx, void *lock, __u64 flags)
{
	if (flags & X86_EFLAGS_IF)
		lock_window_end(ctx, lock);
}

/* Inside an open window interrupts are already off: the outer window goes on. */
static __always_inline void lock_irq(void *ctx, void *lock)
{
	struct window_state *st = state(KIND_HARDIRQ);

	if (!st || st->open || st->reporting || in_hardirq_or_nmi())
		return;
	capture_disable_site(ctx, st);
	capture_task(st);
	st->lock = (__u64)lock;
	open_window(st, SOURCE_LOCK, 0, bpf_get_func_ip(ctx), 0);
}

#define LOCK_IRQSAVE(fn)							\
SEC("fentry")									\
int BPF_PROG(fn##_fentry, void *lock) { irqsave_entry(ctx, lock); return 0; }	\
SEC("fexit")									\
int BPF_PROG(fn##_fexit, void *lock, unsigned long ret)			\
{ irqsave_return(ret, bpf_get_func_ip(ctx)); return 0; }			\
SEC("kprobe")									\
int BPF_KPROBE(fn##_kprobe, void *lock) { irqsave_entry(ctx, lock); return 0; }	\
SEC("kretprobe")								\
int BPF_KRETPROBE(fn##_kretprobe, unsigned long ret)				\
{ irqsave_return(ret, bpf_get_func_ip(ctx)); return 0; }

#define UNLOCK_IRQRESTORE(fn)							\
SEC("fentry")									\
int BPF_PROG(fn##_fentry, void *lock, unsigned long flags)			\
{ irqrestore(ctx, lock, flags); return 0; }					\
SEC("kprobe")									\
int BPF_KPROBE(fn##_kprobe, void *lock, unsigned long flags)			\
{ irqrestore(ctx, lock, flags); return 0; }

#define LOCK_IRQ(fn)								\
SEC("fentry")									\
int BPF_PROG(fn##_fentry, void *lock) { lock_irq(ctx, lock); return 0; }	\
SEC("kprobe")									\
int BPF_KPROBE(fn##_kprobe, void *lock) { lock_irq(ctx, lock); return 0; }

#define UNLOCK_IRQ(fn)								\
SEC("fentry")									\
int BPF_PROG(fn##_fentry, void *lock) { lock_window_end(ctx, lock); return 0; }	\
SEC("kprobe")									\
int BPF_KPROBE(fn##_kprobe, void *lock) { lock_window_end(ctx, lock); return 0; }

LOCK_IRQSAVE(_raw_spin_lock_irqsave)
LOCK_IRQSAVE(_raw_read_lock_irqsave)
LOCK_IRQSAVE(_raw_write_lock_irqsave)
UNLOCK_IRQRESTORE(_raw_spin_unlock_irqrestore)
UNLOCK_IRQRESTORE(_raw_read_unlock_irqrestore)
UNLOCK_IRQRESTORE(_raw_write_unlock_irqrestore)
LOCK_IRQ(_raw_spin_lock_irq)
LOCK_IRQ(_raw_read_lock_irq)
LOCK_IRQ(_raw_write_lock_irq)
UNLOCK_IRQ(_raw_spin_unlock_irq)
UNLOCK_IRQ(_raw_read_unlock_irq)
UNLOCK_IRQ(_raw_write_unlock_irq)

/* ---- signs that interrupts are on (lock mode) ----------------------------- */

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(on_irq_handler_entry) { irqs_are_on(); return 0; }

SEC("tp_btf/local_timer_entry")
int BPF_PROG(on_local_timer_entry) { irqs_are_on(); return 0; }

SEC("tp_btf/softirq_entry")
int BPF_PROG(on_softirq_entry) { irqs_are_on(); return 0; }

/* The sampled sources: softirq-off windows and cpu-clock gaps. */
#include "irqoff_sampler.bpf.h"

char LICENSE[] SEC("license") = "GPL";
