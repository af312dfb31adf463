// SPDX-License-Identifier: GPL-2.0
/*
 * Counts calls of one kernel function per task (optionally only those whose
 * first argument is target_arg0, e.g. one lock), and sends one ring-buffer
 * record per counted call made by tasks whose comm starts with target_comm.
 *
 * `irqlock check` attaches it for a moment to prove that the attach path it
 * plans (fentry, else kprobe) really works on this kernel; the kernel tests
 * use it to check the loader end to end against the fixture's own count.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "hitcount.h"

const volatile char target_comm[TASK_COMM_LEN] = {};
const volatile __u32 target_comm_len = 0;	/* 0: no ring-buffer records */
const volatile __u64 target_arg0 = 0;		/* count only calls with this 1st argument; 0: all */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);	/* pid (thread id) */
	__type(value, __u64);	/* calls */
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
/* Puts the records' type in the object's BTF, where user space checks its mirror of it
 * (irqlock/bpf/btf.py): nothing else names the type outside a function. */
const struct hit_event *hit_event_type __attribute__((unused));

/* Counters user space reads from .bss: what was not recorded. */
__u64 lost_events = 0;
__u64 map_full = 0;

static __always_inline bool comm_matches(const char *comm)
{
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (i >= target_comm_len)
			return true;
		if (comm[i] != target_comm[i])
			return false;
	}
	return true;
}

static __always_inline int count_hit(__u64 arg0)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	__u64 zero = 0, *calls;
	struct hit_event *e;
	char comm[TASK_COMM_LEN];

	if (target_arg0 && arg0 != target_arg0)
		return 0;
	calls = bpf_map_lookup_elem(&hits, &pid);
	if (!calls) {
		/* NOEXIST: another CPU may have inserted it meanwhile */
		bpf_map_update_elem(&hits, &pid, &zero, BPF_NOEXIST);
		calls = bpf_map_lookup_elem(&hits, &pid);
	}
	if (calls)
		__sync_fetch_and_add(calls, 1);
	else
		__sync_fetch_and_add(&map_full, 1);

	if (!target_comm_len)
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!comm_matches(comm))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = pid;
	e->cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e->comm, comm, sizeof(comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The target function is set by the loader before load (fentry) or attach (kprobe). */
SEC("fentry")
int BPF_PROG(hit_fentry, __u64 arg0)
{
	return count_hit(arg0);
}

SEC("kprobe")
int BPF_KPROBE(hit_kprobe, __u64 arg0)
{
	return count_hit(arg0);
}

char LICENSE[] SEC("license") = "GPL";
