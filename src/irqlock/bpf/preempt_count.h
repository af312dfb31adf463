/* SPDX-License-Identifier: GPL-2.0 */
/* This CPU's preempt_count, for the objects that need it (irqoff, locks).
 *
 * x86 kept it in two places over the years: a per-CPU int `__preempt_count` (up to 6.1, and
 * again from 6.15) and, in between, the `preempt_count` field of the per-CPU `struct
 * pcpu_hot` (Debian's 6.12).  Both are weak ksyms and the field is CO-RE-relocated, so one
 * object reads either: the branch for the place a kernel lacks is a constant-false test the
 * verifier never walks.  User space loads this object only where kallsyms has one of the two
 * (irqlock.kernel.sysmap), so the final `return 0` is never what a tool reads.
 *
 * The verifier places a per-CPU ksym through kallsyms, which has no data symbols on a
 * kernel built without CONFIG_KALLSYMS_ALL: the object then fails to load.  For such
 * kernels the same source is built with PERCPU_FROM_SYSTEM_MAP (<name>.sysmap.bpf.o),
 * and user space sets the addresses from the kernel's System.map.  Where there is no
 * map either, irqoff is built with NO_PREEMPT_COUNT (irqoff.nopc.bpf.o): it reads 0, and
 * user space runs only its sampler there, without softirq-off (the exact lock paths need
 * preempt_count to keep a hardirq's lock calls apart from the task's they interrupted). */
#ifndef IRQLOCK_PREEMPT_COUNT_H
#define IRQLOCK_PREEMPT_COUNT_H

#include <bpf/bpf_core_read.h>

/* The kernel's struct pcpu_hot (6.2 to 6.14), only the field read: vmlinux.h is 6.1's. */
struct pcpu_hot___irqlock {
	int preempt_count;
} __attribute__((preserve_access_index));

/* preempt_count's offset in pcpu_hot on this kernel; 0 where there is no pcpu_hot. */
static __always_inline __u64 pcpu_hot_preempt_count_offset(void)
{
	if (bpf_core_field_exists(struct pcpu_hot___irqlock, preempt_count))
		return bpf_core_field_offset(struct pcpu_hot___irqlock, preempt_count);
	return 0;
}

#ifdef PERCPU_FROM_SYSTEM_MAP
/* The per-CPU variable holding it in the per-CPU area: __preempt_count, or pcpu_hot (then
 * the field's offset is added here, from this kernel's BTF) */
const volatile __u64 preempt_count_offset = 0;
const volatile bool preempt_count_in_pcpu_hot = false;
const volatile __u64 per_cpu_offset_addr = 0;	/* &__per_cpu_offset[0], KASLR applied */

static __always_inline int this_cpu_preempt_count(void)
{
	__u64 base = 0, slot = per_cpu_offset_addr + bpf_get_smp_processor_id() * sizeof(base);
	__u64 offset = preempt_count_offset;
	int pc = 0;

	if (preempt_count_in_pcpu_hot)
		offset += pcpu_hot_preempt_count_offset();
	bpf_probe_read_kernel(&base, sizeof(base), (void *)slot);
	bpf_probe_read_kernel(&pc, sizeof(pc), (void *)(base + offset));
	return pc;
}
#elif defined(NO_PREEMPT_COUNT)
static __always_inline int this_cpu_preempt_count(void)
{
	return 0;
}
#else
extern int __preempt_count __ksym __weak;
extern struct pcpu_hot___irqlock pcpu_hot __ksym __weak;

static __always_inline int this_cpu_preempt_count(void)
{
	if (&__preempt_count)
		return *(int *)bpf_this_cpu_ptr(&__preempt_count);
	if (bpf_core_field_exists(struct pcpu_hot___irqlock, preempt_count) && &pcpu_hot)
		return ((struct pcpu_hot___irqlock *)bpf_this_cpu_ptr(&pcpu_hot))->preempt_count;
	return 0;
}
#endif

#endif /* IRQLOCK_PREEMPT_COUNT_H */
