/* SPDX-License-Identifier: GPL-2.0 */
/* This CPU's preempt_count, for the objects that need it (irqoff, locks).
 *
 * The verifier places a per-CPU ksym through kallsyms, which has no data symbols on a
 * kernel built without CONFIG_KALLSYMS_ALL: the object then fails to load.  For such
 * kernels the same source is built with PERCPU_FROM_SYSTEM_MAP (<name>.sysmap.bpf.o),
 * and user space sets the two addresses from the kernel's System.map.  Where there is no
 * map either, irqoff is built with NO_PREEMPT_COUNT (irqoff.nopc.bpf.o): it reads 0, and
 * user space runs only its sampler there, without softirq-off (the exact lock paths need
 * preempt_count to keep a hardirq's lock calls apart from the task's they interrupted). */
#ifndef IRQLOCK_PREEMPT_COUNT_H
#define IRQLOCK_PREEMPT_COUNT_H

#ifdef PERCPU_FROM_SYSTEM_MAP
const volatile __u64 preempt_count_offset = 0;	/* __preempt_count in the per-CPU area */
const volatile __u64 per_cpu_offset_addr = 0;	/* &__per_cpu_offset[0], KASLR applied */

static __always_inline int this_cpu_preempt_count(void)
{
	__u64 base = 0, slot = per_cpu_offset_addr + bpf_get_smp_processor_id() * sizeof(base);
	int pc = 0;

	bpf_probe_read_kernel(&base, sizeof(base), (void *)slot);
	bpf_probe_read_kernel(&pc, sizeof(pc), (void *)(base + preempt_count_offset));
	return pc;
}
#elif defined(NO_PREEMPT_COUNT)
static __always_inline int this_cpu_preempt_count(void)
{
	return 0;
}
#else
extern int __preempt_count __ksym;

static __always_inline int this_cpu_preempt_count(void)
{
	return *(int *)bpf_this_cpu_ptr(&__preempt_count);
}
#endif

#endif /* IRQLOCK_PREEMPT_COUNT_H */
