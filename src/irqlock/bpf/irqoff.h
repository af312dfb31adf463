/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between irqoff.bpf.c and irqlock/tracers/irqoff.py. */
#ifndef IRQLOCK_IRQOFF_H
#define IRQLOCK_IRQOFF_H

#define TASK_COMM_LEN 16
#define IRQOFF_MAX_STACK 32

enum irqoff_kind { KIND_HARDIRQ = 0, KIND_PREEMPT = 1, KIND_SOFTIRQ = 2, KIND_COUNT = 3 };
enum irqoff_source { SOURCE_TRACEPOINT = 0, SOURCE_LOCK = 1, SOURCE_SAMPLE = 2 };

/* How a sampled window was confirmed as interrupts-off time: where its closing tick landed.
 * A tick held back by disabled interrupts is taken as soon as they come back on: right after
 * the instruction that follows an sti (its shadow), or right after a popf.  A tick that lands
 * anywhere else came late for another reason (a hypervisor ran the CPU late): the gap is not
 * known to be IRQ-off. */
enum tick_site { SITE_NONE = 0, SITE_STI = 1, SITE_POPF = 2,
		 SITE_EXACT = 3,	/* not sampled */
		 SITE_SEEN = 4,	/* softirq-off: ticks saw the softirq bits set */
		 SITE_STALL = 5,	/* every CPU's ticks stopped at once: the machine stalled */
		 SITE_BLIND = 6 };	/* not a window: a span in which no tick came to a CPU that
					 * kept running (switching, idle, in user space), so nothing
					 * explains it: the sampler saw nothing there */

struct irqoff_event {
	__u64 start_ns;
	__u64 end_ns;
	__u64 error_ns;		/* 0 when exact */
	__u64 disable_ip;	/* tracepoint ip / traced lock function */
	__u64 disable_parent_ip;
	__u32 pid;
	__u32 cpu;
	__u32 kind;
	__u32 source;
	__s32 disable_stack_bytes;	/* < 0: not captured */
	__s32 enable_stack_bytes;
	__u32 site;		/* enum tick_site */
	__u32 pad;
	char comm[TASK_COMM_LEN];
	__u64 disable_stack[IRQOFF_MAX_STACK];
	__u64 enable_stack[IRQOFF_MAX_STACK];
};

#endif
