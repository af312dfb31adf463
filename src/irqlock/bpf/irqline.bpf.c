// SPDX-License-Identifier: GPL-2.0
/*
 * One IRQ line: how long disable_irq() and friends keep it off.
 *
 * Every way of disabling a line (disable_irq, disable_irq_nosync,
 * disable_hardirq, suspend) goes through __disable_irq(), which calls
 * irq_disable(desc) only on the depth change 0 -> 1; every way of enabling it
 * goes through __enable_irq(), which calls irq_startup(desc) only on 1 -> 0.
 * Both live in kernel/irq/chip.c and are called from manage.c, so they are
 * real calls on every kernel (the __disable_irq/__enable_irq themselves may be
 * inlined into their callers).  Nesting is the kernel's own depth counter: a
 * window runs from the outermost disable to the last enable, and the task
 * that enables may differ from the one that disabled.
 *
 * irq_startup() also starts a line in request_irq(); with no open window that
 * is not the end of anything and is ignored.
 *
 * With handlers on, irq_handler_entry/exit time each handler run, aggregated
 * here per IRQ into a log2 histogram: nothing per run goes to user space.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "irqline.h"

#define STACK_BYTES (IRQLINE_MAX_STACK * sizeof(__u64))

const volatile __u64 threshold_ns = 0;
const volatile bool all_irqs = false;
const volatile __u32 n_targets = 0;
const volatile __u32 targets[IRQLINE_MAX_TARGETS] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* irq */
	__type(value, struct line_disable);
} disabled SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct line_disable);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* irq */
	__type(value, struct handler_stats);
} handlers SEC(".maps");

struct handler_run {
	__u64 start_ns;
	__s32 irq;
};

/* Handlers do not nest on a CPU (they run with interrupts off): one slot each. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct handler_run);
} running SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
/* Puts the records' type in the object's BTF, where user space checks its mirror of it
 * (irqlock/bpf/btf.py): nothing else names the type outside a function. */
const struct irq_disabled_event *irq_disabled_event_type __attribute__((unused));

__u64 lost_events = 0;		/* ring buffer full */
__u64 map_full = 0;		/* a disabled line or a handler's stats did not fit */
__u64 unmatched_enables = 0;	/* enabled, but its disable came before we attached */
__u64 windows_seen = 0;		/* closed windows of wanted IRQs, any length */

static __always_inline bool wanted(__u32 irq)
{
	if (all_irqs)
		return true;
	for (int i = 0; i < IRQLINE_MAX_TARGETS; i++) {
		if (i >= n_targets)
			break;
		if (targets[i] == irq)
			return true;
	}
	return false;
}

static __always_inline void line_disabled(void *ctx, struct irq_desc *desc)
{
	__u32 zero = 0, irq = BPF_CORE_READ(desc, irq_data.irq);
	struct line_disable *d;

	if (!wanted(irq) || !(d = bpf_map_lookup_elem(&scratch, &zero)))
		return;
	d->stack_bytes = bpf_get_stack(ctx, d->stack, STACK_BYTES, 0);
	d->pid = (__u32)bpf_get_current_pid_tgid();
	bpf_get_current_comm(d->comm, sizeof(d->comm));
	d->start_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&disabled, &irq, d, BPF_ANY))
		__sync_fetch_and_add(&map_full, 1);
}

static __always_inline void line_enabled(void *ctx, struct irq_desc *desc)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 irq = BPF_CORE_READ(desc, irq_data.irq);
	struct line_disable *d;
	struct irq_disabled_event *e;

	if (!wanted(irq))
		return;
	d = bpf_map_lookup_elem(&disabled, &irq);
	if (!d) {
		/* request_irq starting a line does this too: only an enable counts */
		if (BPF_CORE_READ(desc, depth) == 1)
			__sync_fetch_and_add(&unmatched_enables, 1);
		return;
	}
	__sync_fetch_and_add(&windows_seen, 1);
	if (now - d->start_ns >= threshold_ns) {
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			e->end_ns = now;
			e->irq = irq;
			e->enable_pid = (__u32)bpf_get_current_pid_tgid();
			bpf_get_current_comm(e->enable_comm, sizeof(e->enable_comm));
			__builtin_memcpy(&e->disable, d, sizeof(e->disable));
			e->enable_stack_bytes = bpf_get_stack(ctx, e->enable_stack, STACK_BYTES, 0);
			bpf_ringbuf_submit(e, 0);
		} else {
			__sync_fetch_and_add(&lost_events, 1);
		}
	}
	bpf_map_delete_elem(&disabled, &irq);
}

SEC("fentry/irq_disable")
int BPF_PROG(irq_disable_fentry, struct irq_desc *desc)
{
	line_disabled(ctx, desc);
	return 0;
}

SEC("kprobe/irq_disable")
int BPF_KPROBE(irq_disable_kprobe, struct irq_desc *desc)
{
	line_disabled(ctx, desc);
	return 0;
}

SEC("fentry/irq_startup")
int BPF_PROG(irq_startup_fentry, struct irq_desc *desc)
{
	line_enabled(ctx, desc);
	return 0;
}

SEC("kprobe/irq_startup")
int BPF_KPROBE(irq_startup_kprobe, struct irq_desc *desc)
{
	line_enabled(ctx, desc);
	return 0;
}

/* ---- handler run time ------------------------------------------------------ */

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(handler_entry, int irq, struct irqaction *action)
{
	__u32 zero = 0;
	struct handler_run *run = bpf_map_lookup_elem(&running, &zero);

	if (!run || !wanted(irq))
		return 0;
	run->irq = irq;
	run->start_ns = bpf_ktime_get_ns();
	return 0;
}

static __always_inline __u32 log2_bucket(__u64 ns)
{
	__u32 bucket = 0;

	for (int i = 0; i < HANDLER_BUCKETS - 1; i++) {
		if (ns < 2)
			break;
		ns >>= 1;
		bucket++;
	}
	return bucket;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(handler_exit, int irq, struct irqaction *action, int ret)
{
	__u64 now = bpf_ktime_get_ns(), ns;
	__u32 zero = 0, key = irq, bucket;
	struct handler_run *run = bpf_map_lookup_elem(&running, &zero);
	struct handler_stats *s, empty = {};

	if (!run || !run->start_ns || run->irq != irq)
		return 0;
	ns = now - run->start_ns;
	run->start_ns = 0;
	s = bpf_map_lookup_elem(&handlers, &key);
	if (!s) {
		if (bpf_map_update_elem(&handlers, &key, &empty, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&handlers, &key)) {
			__sync_fetch_and_add(&map_full, 1);
			return 0;
		}
		s = bpf_map_lookup_elem(&handlers, &key);
		if (!s)
			return 0;
	}
	bucket = log2_bucket(ns);
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->total_ns, ns);
	if (ns > s->max_ns)
		s->max_ns = ns;	/* a race loses at most one max to another CPU's smaller one */
	if (bucket < HANDLER_BUCKETS)
		__sync_fetch_and_add(&s->buckets[bucket], 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
