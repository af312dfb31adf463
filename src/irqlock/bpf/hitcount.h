/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between hitcount.bpf.c and irqlock/bpf/hitcount.py. */
#ifndef IRQLOCK_HITCOUNT_H
#define IRQLOCK_HITCOUNT_H

#define TASK_COMM_LEN 16

/* One ring-buffer record per hit from a task whose comm starts with target_comm. */
struct hit_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 cpu;
	char comm[TASK_COMM_LEN];
};

#endif
