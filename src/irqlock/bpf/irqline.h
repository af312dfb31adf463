/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between irqline.bpf.c and irqlock/tracers/irqline.py. */
#ifndef IRQLOCK_IRQLINE_H
#define IRQLOCK_IRQLINE_H

#define TASK_COMM_LEN 16
#define IRQLINE_MAX_STACK 32
#define IRQLINE_MAX_TARGETS 64	/* IRQ numbers one run can name; --all has no limit */
#define HANDLER_BUCKETS 40	/* log2 buckets of handler run time: [2^i, 2^(i+1)) ns */

/* Who disabled a line, from the 0 -> 1 depth change until it goes back to 0. */
struct line_disable {
	__u64 start_ns;
	__u32 pid;
	__s32 stack_bytes;	/* < 0: not captured */
	char comm[TASK_COMM_LEN];
	__u64 stack[IRQLINE_MAX_STACK];
};

struct irq_disabled_event {
	__u64 end_ns;
	__u32 irq;
	__u32 enable_pid;
	__s32 enable_stack_bytes;
	__u32 pad;
	char enable_comm[TASK_COMM_LEN];
	struct line_disable disable;
	__u64 enable_stack[IRQLINE_MAX_STACK];
};

struct handler_stats {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 buckets[HANDLER_BUCKETS];
};

#endif
