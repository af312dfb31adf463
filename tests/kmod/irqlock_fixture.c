// SPDX-License-Identifier: GPL-2.0
/*
 * irqlock_fixture - ground truth for irqlock's kernel tests.
 *
 * Writing a command to /proc/irqlock_fixture makes the module do one thing
 * the tracers must see (turn interrupts off, disable its own IRQ line, hold
 * locks, take locks in set orders, deadlock two kthreads) and measure it
 * itself with ktime_get_ns() (the clock bpf_ktime_get_ns() reads).  Reading
 * the file returns the result of the last command as one JSON object.
 *
 * Commands (durations in microseconds):
 *   irqoff API US [COUNT]   API: irq_disable irq_save spin_irqsave
 *                           spin_irqsave_nested spin_irq write_irqsave
 *                           bh (softirqs off, interrupts on)
 *                           busy (a busy-wait with interrupts on: no window)
 *                           raw_irqsave raw_irqsave_nested raw_irq (raw spinlocks:
 *                           what still turns interrupts off on PREEMPT_RT)
 *   irqline MODE US         MODE: disable nosync hardirq nested cross;
 *                           hold_disabled leaves the line disabled until
 *                           "irqline release 0" (or unload)
 *   fire K                  run the fixture IRQ's handler K times in hardirq
 *   hold KIND US K [N]      N kthreads (default 2) take one fixture lock K
 *                           times each and hold it US; KIND: spin
 *                           spin_irqsave spin_irq spin_bh read write mutex
 *                           rwsem_read rwsem_write
 *   order PATTERN           abba abba_mutex cycle3 cycle4 consistent irq_unsafe
 *                           dead_frame; read_leak then after_leak (two writes);
 *                           lock classes (slab caches irqlock_fx_foo, irqlock_fx_bar):
 *                           class_spin class_mutex same_class same_class_abba
 *                           reuse (freed objects' addresses in the other order)
 *   classes K               both irqlock_fx_foo objects' spinlocks and one irqlock_fx_bar
 *                           object's mutex, K times each (per-class counts)
 *   deadlock                two kthreads deadlock on two mutexes (killable)
 *   hung                    one kthread holds a mutex, another blocks on it
 *   release                 end the deadlock / hung scenario
 *   percpu                  each CPU's address of the per-CPU variable cpu_number
 *   lockloop KIND N         take and release a fixture lock N times in a row
 *                           (KIND: spin spin_irqsave mutex, or nested: spin while
 *                           a mutex is held, an order edge each time; nested_slab: the
 *                           same with both locks in slab objects) and report the
 *                           time per pair: what a tracer adds to each one
 *
 * Every blocking wait is killable or completes, so the module always unloads.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>
#include <linux/kthread.h>
#include <linux/completion.h>
#include <linux/spinlock.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irq_work.h>
#include <linux/ktime.h>
#include <linux/sched/signal.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/delay.h>

#define RESULT_SIZE (64 * 1024)
#define MAX_THREADS 4
#define MAX_REPEAT 100000

/* Named data symbols: irqlock must report these names from kallsyms. */
static DEFINE_SPINLOCK(fx_spin);
static DEFINE_RWLOCK(fx_rwlock);
static DEFINE_MUTEX(fx_mutex);
static DECLARE_RWSEM(fx_rwsem);
static DEFINE_SPINLOCK(fx_irqoff_lock);
static DEFINE_SPINLOCK(fx_irqoff_inner);
static DEFINE_RWLOCK(fx_irqoff_rwlock);
/* On PREEMPT_RT only raw spinlocks turn interrupts off (spinlock_t there is an rt_mutex). */
static DEFINE_RAW_SPINLOCK(fx_irqoff_raw);
static DEFINE_RAW_SPINLOCK(fx_irqoff_raw_inner);
static DEFINE_SPINLOCK(fx_order_a);
static DEFINE_SPINLOCK(fx_order_b);
static DEFINE_SPINLOCK(fx_order_c);
static DEFINE_SPINLOCK(fx_order_d);
static DEFINE_MUTEX(fx_order_mutex_a);
static DEFINE_MUTEX(fx_order_mutex_b);
static DEFINE_RAW_SPINLOCK(fx_irq_lock);	/* raw: taken in hardirq on PREEMPT_RT too */
static DEFINE_MUTEX(fx_dl_mutex_a);
static DEFINE_MUTEX(fx_dl_mutex_b);
static DEFINE_MUTEX(fx_hung_mutex);

static DEFINE_MUTEX(ctl_lock);	/* one command at a time */
static char *result;
static size_t result_len;

static int fx_irq;
static atomic_t fx_irq_handled = ATOMIC_INIT(0);
static bool fx_irq_in_thread;	/* the handler ran in a kernel thread (forced threading, RT) */
static bool fx_irq_takes_lock;
static struct irq_work fx_irq_work;

/* --- result buffer ------------------------------------------------------ */

static __printf(1, 2) void out(const char *fmt, ...)
{
	va_list args;

	if (result_len >= RESULT_SIZE)
		return;
	va_start(args, fmt);
	result_len += vscnprintf(result + result_len, RESULT_SIZE - result_len, fmt, args);
	va_end(args);
}

static void out_task(const char *key, struct task_struct *t)
{
	out("\"%s\":{\"pid\":%d,\"comm\":\"%s\"}", key, t->pid, t->comm);
}

/* Busy-wait: interrupts may be off, so no sleeping and no timers. */
static u64 spin_for(u64 start, u64 ns)
{
	u64 now;

	do {
		cpu_relax();
		now = ktime_get_ns();
	} while (now - start < ns);
	return now;
}

/* --- kthread helpers ---------------------------------------------------- */

struct fx_thread {
	struct task_struct *task;
	struct completion done;
	int (*fn)(struct fx_thread *);
	int index;
	/* per-thread results */
	u64 *holds;
	u64 *waits;
	int count;
	int ret;
};

static int fx_thread_main(void *data)
{
	struct fx_thread *t = data;

	allow_signal(SIGKILL);	/* release unblocks killable waits with SIGKILL */
	t->ret = t->fn(t);
	complete(&t->done);
	return 0;
}

static int fx_thread_start(struct fx_thread *t, int (*fn)(struct fx_thread *),
			   const char *name, int index)
{
	t->fn = fn;
	t->index = index;
	init_completion(&t->done);
	t->task = kthread_create(fx_thread_main, t, "%s", name);
	if (IS_ERR(t->task)) {
		int err = PTR_ERR(t->task);

		t->task = NULL;
		return err;
	}
	get_task_struct(t->task);
	wake_up_process(t->task);
	return 0;
}

static void fx_thread_reap(struct fx_thread *t)
{
	if (!t->task)
		return;
	wait_for_completion(&t->done);
	put_task_struct(t->task);
	t->task = NULL;
}

/* --- irqoff: interrupts off through each API ----------------------------- */

static u64 irqoff_us;
static int irqoff_count;
static const char *irqoff_api;
/* start/end: inside the window, as the caller sees it.  outer_*: just before the
 * call that turns interrupts off and just after the one that turns them back on;
 * the true window lies between the two pairs. */
static u64 irqoff_start[64], irqoff_end[64], irqoff_outer_start[64], irqoff_outer_end[64];
static int irqoff_cpu[64];

/*
 * After a window only a sampler can see: stay on the CPU with interrupts on for a
 * while, so its late tick lands in this task.  Under emulation the timer interrupt
 * can come hundreds of microseconds after interrupts are back on; had the thread
 * gone to sleep first, the switch would hide the window from a sampler.
 */
#define SAMPLER_GRACE_NS (3 * NSEC_PER_MSEC)

static noinline void fx_irqoff_irq_disable(int i)
{
	irqoff_outer_start[i] = ktime_get_ns();
	local_irq_disable();
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	local_irq_enable();
	irqoff_outer_end[i] = ktime_get_ns();
	spin_for(irqoff_outer_end[i], SAMPLER_GRACE_NS);
}

static noinline void fx_irqoff_irq_save(int i)
{
	unsigned long flags;

	irqoff_outer_start[i] = ktime_get_ns();
	local_irq_save(flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	local_irq_restore(flags);
	irqoff_outer_end[i] = ktime_get_ns();
	spin_for(irqoff_outer_end[i], SAMPLER_GRACE_NS);
}

static noinline void fx_irqoff_spin_irqsave(int i)
{
	unsigned long flags;

	irqoff_outer_start[i] = ktime_get_ns();
	spin_lock_irqsave(&fx_irqoff_lock, flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	spin_unlock_irqrestore(&fx_irqoff_lock, flags);
	irqoff_outer_end[i] = ktime_get_ns();
}

static noinline void fx_irqoff_raw_irqsave(int i)
{
	unsigned long flags;

	irqoff_outer_start[i] = ktime_get_ns();
	raw_spin_lock_irqsave(&fx_irqoff_raw, flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	raw_spin_unlock_irqrestore(&fx_irqoff_raw, flags);
	irqoff_outer_end[i] = ktime_get_ns();
}

static noinline void fx_irqoff_raw_irqsave_nested(int i)
{
	unsigned long flags, inner_flags;

	irqoff_outer_start[i] = ktime_get_ns();
	raw_spin_lock_irqsave(&fx_irqoff_raw, flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	spin_for(irqoff_start[i], irqoff_us * 500);
	raw_spin_lock_irqsave(&fx_irqoff_raw_inner, inner_flags);
	spin_for(ktime_get_ns(), 10 * 1000);
	raw_spin_unlock_irqrestore(&fx_irqoff_raw_inner, inner_flags);
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	raw_spin_unlock_irqrestore(&fx_irqoff_raw, flags);
	irqoff_outer_end[i] = ktime_get_ns();
}

static noinline void fx_irqoff_raw_irq(int i)
{
	irqoff_outer_start[i] = ktime_get_ns();
	raw_spin_lock_irq(&fx_irqoff_raw);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	raw_spin_unlock_irq(&fx_irqoff_raw);
	irqoff_outer_end[i] = ktime_get_ns();
}

/* irqsave inside irqsave: the inner restore must not end the window. */
static noinline void fx_irqoff_spin_irqsave_nested(int i)
{
	unsigned long flags, inner_flags;

	irqoff_outer_start[i] = ktime_get_ns();
	spin_lock_irqsave(&fx_irqoff_lock, flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	spin_for(irqoff_start[i], irqoff_us * 500);
	spin_lock_irqsave(&fx_irqoff_inner, inner_flags);
	spin_for(ktime_get_ns(), 10 * 1000);
	spin_unlock_irqrestore(&fx_irqoff_inner, inner_flags);
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	spin_unlock_irqrestore(&fx_irqoff_lock, flags);
	irqoff_outer_end[i] = ktime_get_ns();
}

static noinline void fx_irqoff_spin_irq(int i)
{
	irqoff_outer_start[i] = ktime_get_ns();
	spin_lock_irq(&fx_irqoff_lock);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	spin_unlock_irq(&fx_irqoff_lock);
	irqoff_outer_end[i] = ktime_get_ns();
}

static noinline void fx_irqoff_write_irqsave(int i)
{
	unsigned long flags;

	irqoff_outer_start[i] = ktime_get_ns();
	write_lock_irqsave(&fx_irqoff_rwlock, flags);
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	write_unlock_irqrestore(&fx_irqoff_rwlock, flags);
	irqoff_outer_end[i] = ktime_get_ns();
}

/* Interrupts stay on: a busy-wait that is no IRQ-off window, however late ticks come
 * (irqlock must not claim one when the hypervisor stalls this CPU meanwhile).  It waits on
 * local_clock() (the TSC): reading the clocksource can turn interrupts off for a moment
 * (HPET, as under emulation), and a stall in that moment is interrupts-off time indeed. */
static noinline void fx_irqoff_busy(int i)
{
	u64 until;

	irqoff_outer_start[i] = ktime_get_ns();
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = irqoff_outer_start[i];
	until = local_clock() + irqoff_us * 1000;
	while (local_clock() < until)
		cpu_relax();
	irqoff_end[i] = ktime_get_ns();
	irqoff_outer_end[i] = irqoff_end[i];
}

/* Softirqs off (interrupts stay on): the window irqlock irqoff --softirq samples. */
static noinline void fx_irqoff_bh(int i)
{
	irqoff_outer_start[i] = ktime_get_ns();
	local_bh_disable();
	irqoff_cpu[i] = raw_smp_processor_id();
	irqoff_start[i] = ktime_get_ns();
	irqoff_end[i] = spin_for(irqoff_start[i], irqoff_us * 1000);
	local_bh_enable();
	irqoff_outer_end[i] = ktime_get_ns();
}

static const struct {
	const char *name;
	void (*fn)(int);
} irqoff_apis[] = {
	{ "irq_disable", fx_irqoff_irq_disable },
	{ "irq_save", fx_irqoff_irq_save },
	{ "spin_irqsave", fx_irqoff_spin_irqsave },
	{ "spin_irqsave_nested", fx_irqoff_spin_irqsave_nested },
	{ "spin_irq", fx_irqoff_spin_irq },
	{ "write_irqsave", fx_irqoff_write_irqsave },
	{ "bh", fx_irqoff_bh },
	{ "busy", fx_irqoff_busy },
	{ "raw_irqsave", fx_irqoff_raw_irqsave },
	{ "raw_irqsave_nested", fx_irqoff_raw_irqsave_nested },
	{ "raw_irq", fx_irqoff_raw_irq },
};

static void (*irqoff_fn)(int);

static int fx_irqoff_thread(struct fx_thread *t)
{
	int i;

	for (i = 0; i < irqoff_count; i++) {
		irqoff_fn(i);
		msleep(20);	/* windows well apart */
	}
	return 0;
}

static int cmd_irqoff(const char *api, u64 us, int count)
{
	struct fx_thread t = {};
	int i, err;

	irqoff_fn = NULL;
	for (i = 0; i < ARRAY_SIZE(irqoff_apis); i++)
		if (!strcmp(api, irqoff_apis[i].name)) {
			irqoff_fn = irqoff_apis[i].fn;
			irqoff_api = irqoff_apis[i].name;
		}
	if (!irqoff_fn || us > 1000000 || count < 1 || count > ARRAY_SIZE(irqoff_start))
		return -EINVAL;
	irqoff_us = us;
	irqoff_count = count;
	err = fx_thread_start(&t, fx_irqoff_thread, "fx_irqoff", 0);
	if (err)
		return err;
	out("{\"cmd\":\"irqoff\",\"api\":\"%s\",\"function\":\"fx_irqoff_%s\",", irqoff_api, irqoff_api);
	out_task("task", t.task);
	fx_thread_reap(&t);
	out(",\"windows\":[");
	for (i = 0; i < count; i++)
		out("%s{\"cpu\":%d,\"start_ns\":%llu,\"end_ns\":%llu,\"duration_ns\":%llu,"
		    "\"outer_start_ns\":%llu,\"outer_end_ns\":%llu}",
		    i ? "," : "", irqoff_cpu[i], irqoff_start[i], irqoff_end[i],
		    irqoff_end[i] - irqoff_start[i], irqoff_outer_start[i], irqoff_outer_end[i]);
	out("]}\n");
	return 0;
}

/* --- one IRQ line ------------------------------------------------------- */

static irqreturn_t fx_irq_handler(int irq, void *dev)
{
	fx_irq_in_thread = !in_hardirq();
	atomic_inc(&fx_irq_handled);
	return IRQ_HANDLED;
}

/* IN-HARDIRQ use of fx_irq_lock (a hard irq_work: hardirq context on PREEMPT_RT too, where
 * the IRQ's own handler is a thread). */
static noinline void fx_irq_lock_in_hardirq(void)
{
	raw_spin_lock(&fx_irq_lock);
	raw_spin_unlock(&fx_irq_lock);
}

static void fx_irq_work_fn(struct irq_work *work)
{
	if (fx_irq_takes_lock)
		fx_irq_lock_in_hardirq();
	generic_handle_irq(fx_irq);	/* we are in hardirq context here */
}

/* Raise the IRQ once; wait until its handler ran (a thread on PREEMPT_RT runs it later). */
static void fire_once(void)
{
	int before = atomic_read(&fx_irq_handled), waited;

	irq_work_queue(&fx_irq_work);
	irq_work_sync(&fx_irq_work);
	for (waited = 0; atomic_read(&fx_irq_handled) == before && waited < 1000; waited++)
		usleep_range(100, 200);
}

static u64 line_us;
static u64 line_called, line_start, line_end, line_returned;
static struct completion line_disabled;

static noinline void fx_irqline_disable(void)
{
	line_called = ktime_get_ns();
	disable_irq(fx_irq);
	line_start = ktime_get_ns();
}

static noinline void fx_irqline_disable_nosync(void)
{
	line_called = ktime_get_ns();
	disable_irq_nosync(fx_irq);
	line_start = ktime_get_ns();
}

static noinline void fx_irqline_disable_hardirq(void)
{
	line_called = ktime_get_ns();
	disable_hardirq(fx_irq);
	line_start = ktime_get_ns();
}

static noinline void fx_irqline_enable(void)
{
	line_end = ktime_get_ns();
	enable_irq(fx_irq);
	line_returned = ktime_get_ns();
}

static int fx_irqline_disabler(struct fx_thread *t)
{
	fx_irqline_disable();
	complete(&line_disabled);
	return 0;
}

static int fx_irqline_enabler(struct fx_thread *t)
{
	wait_for_completion(&line_disabled);
	usleep_range(line_us, line_us + 1);
	fx_irqline_enable();
	return 0;
}

static bool line_held;	/* hold_disabled left the line disabled */

static void line_release(void)
{
	if (line_held) {
		fx_irqline_enable();
		line_held = false;
	}
}

static int cmd_irqline(const char *mode, u64 us)
{
	struct fx_thread a = {}, b = {};
	int err;

	if (us > 10000000)
		return -EINVAL;
	if (!strcmp(mode, "release")) {
		line_release();
		out("{\"cmd\":\"irqline\",\"mode\":\"release\",\"irq\":%d}\n", fx_irq);
		return 0;
	}
	if (line_held)
		return -EBUSY;
	if (!strcmp(mode, "hold_disabled")) {
		fx_irqline_disable();
		line_held = true;
		out("{\"cmd\":\"irqline\",\"mode\":\"%s\",\"irq\":%d,\"irq_name\":\"irqlock_fixture\",",
		    mode, fx_irq);
		out_task("disable_task", current);
		out(",\"disable_called_ns\":%llu,\"start_ns\":%llu}\n", line_called, line_start);
		return 0;
	}
	line_us = us;
	out("{\"cmd\":\"irqline\",\"mode\":\"%s\",\"irq\":%d,\"irq_name\":\"irqlock_fixture\",",
	    mode, fx_irq);
	if (!strcmp(mode, "cross")) {
		init_completion(&line_disabled);
		err = fx_thread_start(&a, fx_irqline_disabler, "fx_irq_off", 0);
		if (err)
			return err;
		err = fx_thread_start(&b, fx_irqline_enabler, "fx_irq_on", 1);
		if (err) {
			complete(&line_disabled);
			fx_thread_reap(&a);
			enable_irq(fx_irq);
			return err;
		}
		out_task("disable_task", a.task);
		out(",");
		out_task("enable_task", b.task);
		fx_thread_reap(&a);
		fx_thread_reap(&b);
		out(",\"disable_function\":\"fx_irqline_disable\"");
	} else {
		bool nested = !strcmp(mode, "nested");

		if (!strcmp(mode, "disable") || nested)
			fx_irqline_disable();
		else if (!strcmp(mode, "nosync"))
			fx_irqline_disable_nosync();
		else if (!strcmp(mode, "hardirq"))
			fx_irqline_disable_hardirq();
		else
			return -EINVAL;
		if (nested) {
			disable_irq(fx_irq);
			usleep_range(us / 2, us / 2 + 1);
			enable_irq(fx_irq);	/* depth 2 -> 1: still disabled */
			usleep_range(us / 2, us / 2 + 1);
		} else {
			usleep_range(us, us + 1);
		}
		fx_irqline_enable();
		out_task("disable_task", current);
		out(",");
		out_task("enable_task", current);
		out(",\"disable_function\":\"fx_irqline_disable%s\"",
		    !strcmp(mode, "nosync") ? "_nosync" : !strcmp(mode, "hardirq") ? "_hardirq" : "");
	}
	/* the window lies between disable_called_ns..start_ns and end_ns..enable_returned_ns */
	out(",\"disable_called_ns\":%llu,\"start_ns\":%llu,\"end_ns\":%llu,\"enable_returned_ns\":%llu,\"duration_ns\":%llu}\n",
	    line_called, line_start, line_end, line_returned, line_end - line_start);
	return 0;
}

static int cmd_fire(int k)
{
	int before = atomic_read(&fx_irq_handled), i;

	if (k < 1 || k > MAX_REPEAT)
		return -EINVAL;
	for (i = 0; i < k; i++)
		fire_once();
	out("{\"cmd\":\"fire\",\"irq\":%d,\"irq_name\":\"irqlock_fixture\",\"fired\":%d,"
	    "\"handled\":%d,\"threaded\":%s}\n", fx_irq, k, atomic_read(&fx_irq_handled) - before,
	    fx_irq_in_thread ? "true" : "false");
	return 0;
}

/* --- lock holds --------------------------------------------------------- */

static const char *hold_kind;
static u64 hold_us;
static int hold_k;

/* Busy-hold the lock for hold_us; returns the hold the fixture measured. */
static u64 hold_body(void)
{
	u64 t0 = ktime_get_ns();

	return spin_for(t0, hold_us * 1000) - t0;
}

static noinline u64 fx_hold_spin(void)
{
	u64 held;

	spin_lock(&fx_spin);
	held = hold_body();
	spin_unlock(&fx_spin);
	return held;
}

static noinline u64 fx_hold_spin_irqsave(void)
{
	unsigned long flags;
	u64 held;

	spin_lock_irqsave(&fx_spin, flags);
	held = hold_body();
	spin_unlock_irqrestore(&fx_spin, flags);
	return held;
}

static noinline u64 fx_hold_spin_irq(void)
{
	u64 held;

	spin_lock_irq(&fx_spin);
	held = hold_body();
	spin_unlock_irq(&fx_spin);
	return held;
}

static noinline u64 fx_hold_spin_bh(void)
{
	u64 held;

	spin_lock_bh(&fx_spin);
	held = hold_body();
	spin_unlock_bh(&fx_spin);
	return held;
}

static noinline u64 fx_hold_read(void)
{
	u64 held;

	read_lock(&fx_rwlock);
	held = hold_body();
	read_unlock(&fx_rwlock);
	return held;
}

static noinline u64 fx_hold_write(void)
{
	u64 held;

	write_lock(&fx_rwlock);
	held = hold_body();
	write_unlock(&fx_rwlock);
	return held;
}

static noinline u64 fx_hold_mutex(void)
{
	u64 held;

	mutex_lock(&fx_mutex);
	held = hold_body();
	mutex_unlock(&fx_mutex);
	return held;
}

static noinline u64 fx_hold_rwsem_read(void)
{
	u64 held;

	down_read(&fx_rwsem);
	held = hold_body();
	up_read(&fx_rwsem);
	return held;
}

static noinline u64 fx_hold_rwsem_write(void)
{
	u64 held;

	down_write(&fx_rwsem);
	held = hold_body();
	up_write(&fx_rwsem);
	return held;
}

static const struct {
	const char *kind;
	const char *lock;
	u64 (*fn)(void);
	bool sleeps;
} hold_kinds[] = {
	{ "spin", "fx_spin", fx_hold_spin, false },
	{ "spin_irqsave", "fx_spin", fx_hold_spin_irqsave, false },
	{ "spin_irq", "fx_spin", fx_hold_spin_irq, false },
	{ "spin_bh", "fx_spin", fx_hold_spin_bh, false },
	{ "read", "fx_rwlock", fx_hold_read, false },
	{ "write", "fx_rwlock", fx_hold_write, false },
	{ "mutex", "fx_mutex", fx_hold_mutex, true },
	{ "rwsem_read", "fx_rwsem", fx_hold_rwsem_read, true },
	{ "rwsem_write", "fx_rwsem", fx_hold_rwsem_write, true },
};

static int hold_index;

/* holds: measured inside the critical section; call_ns: lock call to unlock return. */
static int fx_hold_thread(struct fx_thread *t)
{
	int i;

	for (i = 0; i < hold_k; i++) {
		u64 before = ktime_get_ns();

		t->holds[i] = hold_kinds[hold_index].fn();
		t->waits[i] = ktime_get_ns() - before;
		t->count++;
		if (!hold_kinds[hold_index].sleeps && (i & 63) == 63)
			cond_resched();
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static void out_stats(const char *key, u64 *v, int n)
{
	u64 total = 0;
	int i;

	sort(v, n, sizeof(*v), cmp_u64, NULL);
	for (i = 0; i < n; i++)
		total += v[i];
	out("\"%s\":{\"count\":%d,\"total\":%llu,\"min\":%llu,\"max\":%llu,\"p50\":%llu}",
	    key, n, total, n ? v[0] : 0, n ? v[n - 1] : 0, n ? v[(n - 1) / 2] : 0);
}

static int cmd_hold(const char *kind, u64 us, int k, int nthreads)
{
	struct fx_thread t[MAX_THREADS] = {};
	int i, err = 0;

	hold_index = -1;
	for (i = 0; i < ARRAY_SIZE(hold_kinds); i++)
		if (!strcmp(kind, hold_kinds[i].kind))
			hold_index = i;
	if (hold_index < 0 || us > 100000 || k < 1 || k > MAX_REPEAT ||
	    nthreads < 1 || nthreads > MAX_THREADS)
		return -EINVAL;
	hold_kind = hold_kinds[hold_index].kind;
	hold_us = us;
	hold_k = k;
	for (i = 0; i < nthreads; i++) {
		t[i].holds = kvcalloc(k, sizeof(u64), GFP_KERNEL);
		t[i].waits = kvcalloc(k, sizeof(u64), GFP_KERNEL);
		if (!t[i].holds || !t[i].waits) {
			err = -ENOMEM;
			goto free;
		}
	}
	for (i = 0; i < nthreads && !err; i++) {
		char name[16];

		snprintf(name, sizeof(name), "fx_hold_%d", i);
		err = fx_thread_start(&t[i], fx_hold_thread, name, i);
	}
	out("{\"cmd\":\"hold\",\"kind\":\"%s\",\"lock\":\"%s\",\"function\":\"fx_hold_%s\",\"threads\":[",
	    hold_kind, hold_kinds[hold_index].lock, hold_kind);
	for (i = 0; i < nthreads; i++) {
		if (!t[i].task)
			continue;
		out("%s{", i ? "," : "");
		out_task("task", t[i].task);
		fx_thread_reap(&t[i]);
		out(",\"acquisitions\":%d,", t[i].count);
		out_stats("hold_ns", t[i].holds, t[i].count);
		out(",");
		out_stats("call_ns", t[i].waits, t[i].count);
		out("}");
	}
	out("]}\n");
free:
	for (i = 0; i < nthreads; i++) {
		kvfree(t[i].holds);
		kvfree(t[i].waits);
	}
	return err;
}

/* --- lock orders -------------------------------------------------------- */

/* A lock an order scenario takes: a spinlock or a mutex, and the name the tests expect. */
struct order_lock {
	void *lock;
	bool mutex;
	const char *name;
};

static struct order_lock order_first, order_second;

static void order_take(struct order_lock *l)
{
	if (l->mutex)
		mutex_lock(l->lock);
	else
		spin_lock(l->lock);
}

static void order_drop(struct order_lock *l)
{
	if (l->mutex)
		mutex_unlock(l->lock);
	else
		spin_unlock(l->lock);
}

static noinline void fx_order_take_two(void)
{
	order_take(&order_first);
	order_take(&order_second);
	order_drop(&order_second);
	order_drop(&order_first);
}

static int fx_order_thread(struct fx_thread *t)
{
	fx_order_take_two();
	return 0;
}

/* HARDIRQ-ON use of an IN-HARDIRQ lock, held long enough (20 ms) for the timer
 * interrupt to land while it is held: what makes it a deadlock waiting to happen.
 * Returns the hold, so the unlock is not a tail call (it keeps this frame on the
 * unlock's stack). */
static noinline u64 fx_irq_lock_irqs_on(void)
{
	u64 start;

	raw_spin_lock_bh(&fx_irq_lock);	/* interrupts on; _bh, as PREEMPT_RT inlines raw_spin_unlock */
	start = ktime_get_ns();
	spin_for(start, 20 * NSEC_PER_MSEC);
	raw_spin_unlock_bh(&fx_irq_lock);
	return ktime_get_ns() - start;
}

static int fx_irq_unsafe_thread(struct fx_thread *t)
{
	fx_irq_lock_irqs_on();
	return 0;
}

/* dead_frame: a spinlock on the stack that a function leaves held when it returns -- what a
 * release the tracer did not see looks like to it (its program skipped on this CPU, with a
 * wait queue's lock on the stack): the memory still says held, by this task, and the next
 * call at the same depth puts its own frame there.  The lock is deepest in the frame, under
 * a kilobyte the calls after it (a lock function, a tracer's trampoline and programs) leave
 * untouched. */
static noinline unsigned long fx_stack_lock(bool leave_held)
{
	struct {
		spinlock_t lock;
		char above[1024];
	} frame;

	spin_lock_init(&frame.lock);
	spin_lock(&frame.lock);
	barrier_data(&frame);
	if (!leave_held) {
		spin_unlock(&frame.lock);
		return (unsigned long)&frame.lock;
	}
	/* what spin_lock took besides the lock goes back */
#ifdef CONFIG_PREEMPT_RT
	migrate_enable();
	rcu_read_unlock();
#else
	preempt_enable();
#endif
	return (unsigned long)&frame.lock;
}

/* fx_order_c after the lock left held, then the same stack lock (the same address: the same
 * function at the same depth) while fx_order_c is held: only c -> stack lock is an order. */
static noinline unsigned long fx_dead_frame_orders(void)
{
	unsigned long left, taken;

	left = fx_stack_lock(true);
	spin_lock(&fx_order_c);
	spin_unlock(&fx_order_c);
	spin_lock(&fx_order_c);
	taken = fx_stack_lock(false);
	spin_unlock(&fx_order_c);
	return left == taken ? taken : 0;
}

static unsigned long fx_dead_frame_lock;

static int fx_dead_frame_thread(struct fx_thread *t)
{
	fx_dead_frame_lock = fx_dead_frame_orders();
	return 0;
}

static int dead_frame_order(void)
{
	struct fx_thread t = {};
	int err = fx_thread_start(&t, fx_dead_frame_thread, "fx_dead_frame", 0);

	if (err)
		return err;
	out("{");
	out_task("task", t.task);
	fx_thread_reap(&t);
	if (!fx_dead_frame_lock)
		return -EAGAIN;	/* the two calls' frames differ: nothing to show */
	out(",\"held\":\"fx_order_c\",\"acquired\":\"stack lock\",\"held_addr\":\"0x%lx\","
	    "\"acquired_addr\":\"0x%lx\"}]}\n", (unsigned long)&fx_order_c, fx_dead_frame_lock);
	return 0;
}

/* read_leak: this task read-locks fx_rwlock and lets go of it without read_unlock() (what a
 * release the tracer's skipped program did not see looks like), while a kthread on another
 * CPU keeps it read-held LEAK_READ_MS, so the lock's reader count still says held.
 * after_leak, the same task's next system call on the same CPU (the caller pins it):
 * fx_order_c, then fx_rwlock read under it -- the one real order. */
#ifdef CONFIG_PREEMPT_RT
/* rwlock_t is an rwbase there: no release but read_unlock() */
static int read_leak(void) { return -EOPNOTSUPP; }
static int after_leak(void) { return -EOPNOTSUPP; }
static void leak_reader_reap(void) { }
#else
#define LEAK_READ_MS 500
static DECLARE_COMPLETION(leak_reader_holds);
static struct fx_thread leak_reader;
static int leak_reader_cpu;

static int fx_leak_reader(struct fx_thread *t)
{
	set_cpus_allowed_ptr(current, cpumask_of(leak_reader_cpu));
	read_lock(&fx_rwlock);
	complete(&leak_reader_holds);
	mdelay(LEAK_READ_MS);
	read_unlock(&fx_rwlock);
	return 0;
}

static int read_leak(void)
{
	int err;

	if (leak_reader.task)
		return -EBUSY;
	leak_reader_cpu = cpumask_any_but(cpu_online_mask, raw_smp_processor_id());
	if (leak_reader_cpu >= nr_cpu_ids)
		return -ENODEV;
	reinit_completion(&leak_reader_holds);
	err = fx_thread_start(&leak_reader, fx_leak_reader, "fx_leak_reader", 0);
	if (err)
		return err;
	wait_for_completion(&leak_reader_holds);
	read_lock(&fx_rwlock);
	do_raw_read_unlock(&fx_rwlock);	/* read_unlock() without _raw_read_unlock() */
	preempt_enable();
	out("]}\n");
	return 0;
}

static noinline void fx_after_leak(void)
{
	spin_lock(&fx_order_c);
	spin_unlock(&fx_order_c);
	spin_lock(&fx_order_c);
	read_lock(&fx_rwlock);
	read_unlock(&fx_rwlock);
	spin_unlock(&fx_order_c);
}

static int after_leak(void)
{
	if (!leak_reader.task)
		return -EINVAL;	/* read_leak first */
	fx_after_leak();
	fx_thread_reap(&leak_reader);
	out("{");
	out_task("task", current);
	out(",\"held\":\"fx_order_c\",\"acquired\":\"fx_rwlock\",\"held_addr\":\"0x%lx\","
	    "\"acquired_addr\":\"0x%lx\"}]}\n", (unsigned long)&fx_order_c,
	    (unsigned long)&fx_rwlock);
	return 0;
}

static void leak_reader_reap(void)
{
	fx_thread_reap(&leak_reader);
}
#endif

/* Run one kthread that takes first then second; report the edge. */
static int order_step(struct order_lock first, struct order_lock second, const char *name, int n)
{
	struct fx_thread t = {};
	int err;

	order_first = first;
	order_second = second;
	err = fx_thread_start(&t, fx_order_thread, name, 0);
	if (err)
		return err;
	out("%s{", n ? "," : "");
	out_task("task", t.task);
	fx_thread_reap(&t);
	out(",\"held\":\"%s\",\"acquired\":\"%s\",\"held_addr\":\"0x%lx\",\"acquired_addr\":\"0x%lx\"}",
	    first.name, second.name, (unsigned long)first.lock, (unsigned long)second.lock);
	return 0;
}

#define SPIN(l) ((struct order_lock){ &(l), false, #l })
#define MUTEX(l) ((struct order_lock){ &(l), true, #l })

/* --- lock classes: objects of two slab caches of our own -------------------- *
 * Each cache has a constructor, so the kernel never merges it with another: every
 * lock in it is of one class, (cache, offset of the lock in the object). */

struct fx_foo {
	long id;
	spinlock_t lock;
	struct mutex mutex;
};

struct fx_bar {
	char tag[40];
	spinlock_t lock;
	struct mutex mutex;
};

#define FX_FOO_CACHE "irqlock_fx_foo"
#define FX_BAR_CACHE "irqlock_fx_bar"
static struct kmem_cache *fx_foo_cache, *fx_bar_cache;

static void fx_foo_ctor(void *p)
{
	struct fx_foo *foo = p;

	spin_lock_init(&foo->lock);
	mutex_init(&foo->mutex);
}

static void fx_bar_ctor(void *p)
{
	struct fx_bar *bar = p;

	spin_lock_init(&bar->lock);
	mutex_init(&bar->mutex);
}

#define FX_OBJECTS 2
static struct fx_foo *foo[FX_OBJECTS];
static struct fx_bar *bar[FX_OBJECTS];

static void free_objects(void)
{
	for (int i = 0; i < FX_OBJECTS; i++) {
		if (foo[i])
			kmem_cache_free(fx_foo_cache, foo[i]);
		if (bar[i])
			kmem_cache_free(fx_bar_cache, bar[i]);
		foo[i] = NULL;
		bar[i] = NULL;
	}
}

static int alloc_objects(void)
{
	for (int i = 0; i < FX_OBJECTS; i++) {
		foo[i] = kmem_cache_alloc(fx_foo_cache, GFP_KERNEL);
		bar[i] = kmem_cache_alloc(fx_bar_cache, GFP_KERNEL);
		if (!foo[i] || !bar[i]) {
			free_objects();
			return -ENOMEM;
		}
	}
	return 0;
}

static struct order_lock foo_lock(int i, bool mutex)
{
	static const char *const names[2][FX_OBJECTS] = {
		{ "foo1->lock", "foo2->lock" }, { "foo1->mutex", "foo2->mutex" } };

	return (struct order_lock){ mutex ? (void *)&foo[i]->mutex : (void *)&foo[i]->lock,
				    mutex, names[mutex][i] };
}

static struct order_lock bar_lock(int i, bool mutex)
{
	static const char *const names[2][FX_OBJECTS] = {
		{ "bar1->lock", "bar2->lock" }, { "bar1->mutex", "bar2->mutex" } };

	return (struct order_lock){ mutex ? (void *)&bar[i]->mutex : (void *)&bar[i]->lock,
				    mutex, names[mutex][i] };
}

/* The caches and where the locks are in their objects: what a class is named by. */
static void out_classes(bool mutex)
{
	size_t foo_offset = mutex ? offsetof(struct fx_foo, mutex) : offsetof(struct fx_foo, lock);
	size_t bar_offset = mutex ? offsetof(struct fx_bar, mutex) : offsetof(struct fx_bar, lock);

	out(",\"classes\":[{\"cache\":\"%s\",\"offset\":%zu},{\"cache\":\"%s\",\"offset\":%zu}]",
	    FX_FOO_CACHE, foo_offset, FX_BAR_CACHE, bar_offset);
}

/* class_spin, class_mutex: foo1 then bar1, and bar2 then foo2: no two instances are
 * taken in both orders, yet the classes are (lockdep's ABBA between classes).
 * same_class: two foos taken in address order by both threads (double_rq_lock's way).
 * same_class_abba: two foos taken in both orders (a recursive nesting that can deadlock).
 * reuse: foo1 then foo2; both freed and two new foos made, which the cache gives the
 * freed memory (last freed first); the one at foo2's address, then the one at foo1's:
 * two addresses taken in both orders by locks that never coexisted -- no deadlock.
 * "reused" says whether the new foos did take both addresses: this task stays on one CPU
 * from the first allocation to the second, so that the freed objects go back to the CPU slab
 * they came from and come out of it again (a free on another CPU is a remote one). */
static int class_orders_on(const char *pattern, bool mutex);

static int class_orders(const char *pattern)
{
	bool mutex = !strcmp(pattern, "class_mutex"), reuse = !strcmp(pattern, "reuse");
	int err;

	if (reuse)
		migrate_disable();
	err = class_orders_on(pattern, mutex);
	if (reuse)
		migrate_enable();
	return err;
}

static int class_orders_on(const char *pattern, bool mutex)
{
	void *old_first, *old_second;
	int lo, err, at_second;
	bool reused = false;

	err = alloc_objects();
	if (err)
		return err;
	lo = foo[0] < foo[1] ? 0 : 1;
	if (!strcmp(pattern, "class_spin") || mutex)
		err = order_step(foo_lock(0, mutex), bar_lock(0, mutex), "fx_class_1", 0) ?:
		      order_step(bar_lock(1, mutex), foo_lock(1, mutex), "fx_class_2", 1);
	else if (!strcmp(pattern, "same_class"))
		err = order_step(foo_lock(lo, false), foo_lock(!lo, false), "fx_class_1", 0) ?:
		      order_step(foo_lock(lo, false), foo_lock(!lo, false), "fx_class_2", 1);
	else if (!strcmp(pattern, "reuse")) {
		old_first = &foo[0]->lock;
		old_second = &foo[1]->lock;
		err = order_step(foo_lock(0, false), foo_lock(1, false), "fx_class_1", 0);
		free_objects();
		err = err ?: alloc_objects();
		if (err)
			return err;
		at_second = (void *)&foo[1]->lock == old_second ? 1 : 0;
		reused = (void *)&foo[at_second]->lock == old_second &&
			 (void *)&foo[!at_second]->lock == old_first;
		err = order_step(foo_lock(at_second, false), foo_lock(!at_second, false),
				 "fx_class_2", 1);
	} else
		err = order_step(foo_lock(0, false), foo_lock(1, false), "fx_class_1", 0) ?:
		      order_step(foo_lock(1, false), foo_lock(0, false), "fx_class_2", 1);
	out("]");
	out_classes(mutex);
	out(",\"reused\":%s}\n", reused ? "true" : "false");
	free_objects();
	return err;
}

/* classes K: both foos' spinlocks and bar1's mutex, K times each, in this task: what
 * irqlock locks --by class adds up per class (a class of two instances, one of one). */
static int cmd_classes(const char *count)
{
	u64 k;
	int err;

	if (kstrtou64(count, 10, &k) || k < 1 || k > MAX_REPEAT)
		return -EINVAL;
	err = alloc_objects();
	if (err)
		return err;
	for (u64 i = 0; i < k; i++) {
		for (int j = 0; j < FX_OBJECTS; j++) {
			spin_lock(&foo[j]->lock);
			spin_unlock(&foo[j]->lock);
		}
		mutex_lock(&bar[0]->mutex);
		mutex_unlock(&bar[0]->mutex);
	}
	out("{\"cmd\":\"classes\",\"pid\":%d,\"classes\":["
	    "{\"cache\":\"%s\",\"offset\":%zu,\"kind\":\"spinlock\",\"locks\":%d,\"acquisitions\":%llu},"
	    "{\"cache\":\"%s\",\"offset\":%zu,\"kind\":\"mutex\",\"locks\":1,\"acquisitions\":%llu}]}\n",
	    task_pid_nr(current), FX_FOO_CACHE, offsetof(struct fx_foo, lock), FX_OBJECTS,
	    k * FX_OBJECTS, FX_BAR_CACHE, offsetof(struct fx_bar, mutex), k);
	free_objects();
	return 0;
}

static int cmd_order(const char *pattern)
{
	int err = 0;

	out("{\"cmd\":\"order\",\"pattern\":\"%s\",\"function\":\"fx_order_take_two\",\"edges\":[",
	    pattern);
	if (!strncmp(pattern, "class_", 6) || !strncmp(pattern, "same_class", 10) ||
	    !strcmp(pattern, "reuse")) {
		if (strcmp(pattern, "class_spin") && strcmp(pattern, "class_mutex") &&
		    strcmp(pattern, "same_class") && strcmp(pattern, "same_class_abba") &&
		    strcmp(pattern, "reuse"))
			return -EINVAL;
		return class_orders(pattern);
	}
	if (!strcmp(pattern, "abba")) {
		err = order_step(SPIN(fx_order_a), SPIN(fx_order_b), "fx_order_1", 0) ?:
		      order_step(SPIN(fx_order_b), SPIN(fx_order_a), "fx_order_2", 1);
	} else if (!strcmp(pattern, "abba_mutex")) {
		err = order_step(MUTEX(fx_order_mutex_a), MUTEX(fx_order_mutex_b), "fx_order_1", 0) ?:
		      order_step(MUTEX(fx_order_mutex_b), MUTEX(fx_order_mutex_a), "fx_order_2", 1);
	} else if (!strcmp(pattern, "cycle3")) {
		err = order_step(SPIN(fx_order_a), SPIN(fx_order_b), "fx_order_1", 0) ?:
		      order_step(SPIN(fx_order_b), SPIN(fx_order_c), "fx_order_2", 1) ?:
		      order_step(SPIN(fx_order_c), SPIN(fx_order_a), "fx_order_3", 2);
	} else if (!strcmp(pattern, "cycle4")) {
		err = order_step(SPIN(fx_order_a), SPIN(fx_order_b), "fx_order_1", 0) ?:
		      order_step(SPIN(fx_order_b), SPIN(fx_order_c), "fx_order_2", 1) ?:
		      order_step(SPIN(fx_order_c), SPIN(fx_order_d), "fx_order_3", 2) ?:
		      order_step(SPIN(fx_order_d), SPIN(fx_order_a), "fx_order_4", 3);
	} else if (!strcmp(pattern, "consistent")) {
		err = order_step(SPIN(fx_order_a), SPIN(fx_order_b), "fx_order_1", 0) ?:
		      order_step(SPIN(fx_order_a), SPIN(fx_order_b), "fx_order_2", 1);
	} else if (!strcmp(pattern, "dead_frame")) {
		return dead_frame_order();
	} else if (!strcmp(pattern, "read_leak")) {
		return read_leak();
	} else if (!strcmp(pattern, "after_leak")) {
		return after_leak();
	} else if (!strcmp(pattern, "irq_unsafe")) {
		struct fx_thread t = {};

		out("]");
		fx_irq_takes_lock = true;
		fire_once();
		fx_irq_takes_lock = false;
		err = fx_thread_start(&t, fx_irq_unsafe_thread, "fx_irq_unsafe", 0);
		if (err)
			return err;
		out(",\"lock\":\"fx_irq_lock\",\"lock_addr\":\"0x%lx\",\"irqs_on_function\":\"fx_irq_lock_irqs_on\",",
		    (unsigned long)&fx_irq_lock);
		out_task("irqs_on_task", t.task);
		fx_thread_reap(&t);
		out("}\n");
		return 0;
	} else {
		return -EINVAL;
	}
	out("]}\n");
	return err;
}

/* --- real deadlock and hung task ----------------------------------------- */

static struct fx_thread scenario[2];
static const char *scenario_name;
static DECLARE_COMPLETION(hung_release);

static noinline int fx_deadlock_take(struct mutex *first, struct mutex *second)
{
	int err;

	mutex_lock(first);
	msleep(100);	/* let the other thread take its first mutex */
	err = mutex_lock_killable(second);	/* blocks forever: ABBA */
	if (!err)
		mutex_unlock(second);
	mutex_unlock(first);
	return err;
}

static int fx_deadlock_thread(struct fx_thread *t)
{
	return t->index == 0 ? fx_deadlock_take(&fx_dl_mutex_a, &fx_dl_mutex_b)
			     : fx_deadlock_take(&fx_dl_mutex_b, &fx_dl_mutex_a);
}

static noinline int fx_hung_hold(void)
{
	mutex_lock(&fx_hung_mutex);
	wait_for_completion_killable(&hung_release);
	mutex_unlock(&fx_hung_mutex);
	return 0;
}

/* Plain D state (not killable: the kernel's hung-task detector skips killable sleeps)
 * until release lets the owner unlock. */
static noinline int fx_hung_wait(void)
{
	mutex_lock(&fx_hung_mutex);
	mutex_unlock(&fx_hung_mutex);
	return 0;
}

static int fx_hung_thread(struct fx_thread *t)
{
	if (t->index == 0)
		return fx_hung_hold();
	msleep(50);	/* the holder goes first */
	return fx_hung_wait();
}

/* --- lockloop: the cost of one uncontended acquire/release -------------- */

static DEFINE_SPINLOCK(fx_loop_lock);
static DEFINE_MUTEX(fx_loop_mutex);

static int cmd_lockloop(const char *kind, u64 n)
{
	unsigned long flags;
	u64 i, start, total;

	if (n < 1 || n > 100000000)
		return -EINVAL;
	start = ktime_get_ns();
	if (!strcmp(kind, "spin")) {
		for (i = 0; i < n; i++) {
			spin_lock(&fx_loop_lock);
			spin_unlock(&fx_loop_lock);
			if ((i & 1023) == 1023)
				cond_resched();
		}
	} else if (!strcmp(kind, "spin_irqsave")) {
		for (i = 0; i < n; i++) {
			spin_lock_irqsave(&fx_loop_lock, flags);
			spin_unlock_irqrestore(&fx_loop_lock, flags);
			if ((i & 1023) == 1023)
				cond_resched();
		}
	} else if (!strcmp(kind, "mutex")) {
		for (i = 0; i < n; i++) {
			mutex_lock(&fx_loop_mutex);
			mutex_unlock(&fx_loop_mutex);
			if ((i & 1023) == 1023)
				cond_resched();
		}
	} else if (!strcmp(kind, "nested")) {
		/* each pair taken while another lock is held: an order edge each time */
		mutex_lock(&fx_loop_mutex);
		for (i = 0; i < n; i++) {
			spin_lock(&fx_loop_lock);
			spin_unlock(&fx_loop_lock);
			if ((i & 1023) == 1023)
				cond_resched();
		}
		mutex_unlock(&fx_loop_mutex);
	} else if (!strcmp(kind, "nested_slab")) {
		/* the same inside slab objects: each acquisition's lock class is looked up */
		int err = alloc_objects();

		if (err)
			return err;
		start = ktime_get_ns();
		mutex_lock(&foo[0]->mutex);
		for (i = 0; i < n; i++) {
			spin_lock(&foo[1]->lock);
			spin_unlock(&foo[1]->lock);
			if ((i & 1023) == 1023)
				cond_resched();
		}
		mutex_unlock(&foo[0]->mutex);
		total = ktime_get_ns() - start;
		free_objects();
		goto done;
	} else {
		return -EINVAL;
	}
	total = ktime_get_ns() - start;
done:
	out("{\"cmd\":\"lockloop\",\"kind\":\"%s\",\"count\":%llu,\"total_ns\":%llu,"
	    "\"ns_per_pair\":%llu}\n", kind, n, total, total / n);
	return 0;
}

static int cmd_scenario(const char *name)
{
	bool dl = !strcmp(name, "deadlock");
	int err;

	if (scenario_name)
		return -EBUSY;
	reinit_completion(&hung_release);
	err = fx_thread_start(&scenario[0], dl ? fx_deadlock_thread : fx_hung_thread,
			      dl ? "fx_dl_a" : "fx_hung_owner", 0);
	if (err)
		return err;
	err = fx_thread_start(&scenario[1], dl ? fx_deadlock_thread : fx_hung_thread,
			      dl ? "fx_dl_b" : "fx_hung_waiter", 1);
	if (err) {
		complete_all(&hung_release);
		send_sig(SIGKILL, scenario[0].task, 1);
		fx_thread_reap(&scenario[0]);
		return err;
	}
	scenario_name = dl ? "deadlock" : "hung";
	msleep(300);	/* the cycle / the block has formed */
	out("{\"cmd\":\"%s\",", scenario_name);
	if (dl) {
		out("\"mutexes\":[{\"name\":\"fx_dl_mutex_a\",\"addr\":\"0x%lx\"},{\"name\":\"fx_dl_mutex_b\",\"addr\":\"0x%lx\"}],",
		    (unsigned long)&fx_dl_mutex_a, (unsigned long)&fx_dl_mutex_b);
		out_task("task_a", scenario[0].task);
		out(",");
		out_task("task_b", scenario[1].task);
	} else {
		out("\"mutex\":{\"name\":\"fx_hung_mutex\",\"addr\":\"0x%lx\"},",
		    (unsigned long)&fx_hung_mutex);
		out_task("owner", scenario[0].task);
		out(",");
		out_task("waiter", scenario[1].task);
	}
	out(",\"started_ns\":%llu}\n", ktime_get_ns());
	return 0;
}

static int cmd_release(void)
{
	int i;

	if (!scenario_name)
		return 0;
	complete_all(&hung_release);
	if (!strcmp(scenario_name, "deadlock"))
		for (i = 0; i < 2; i++)
			send_sig(SIGKILL, scenario[i].task, 1);
	for (i = 0; i < 2; i++)
		fx_thread_reap(&scenario[i]);
	out("{\"cmd\":\"release\",\"scenario\":\"%s\",\"released_ns\":%llu}\n",
	    scenario_name, ktime_get_ns());
	scenario_name = NULL;
	return 0;
}

/* --- percpu: where each CPU's copy of a per-CPU variable is -------------- */

static int cmd_percpu(void)
{
	int cpu;

	out("{\"cmd\":\"percpu\",\"symbol\":\"this_cpu_off\",\"addrs\":{");
	for_each_possible_cpu(cpu)
		out("%s\"%d\":\"0x%lx\"", cpu ? "," : "", cpu,
		    (unsigned long)per_cpu_ptr(&this_cpu_off, cpu));
	out("}}\n");
	return 0;
}

/* --- control file ------------------------------------------------------- */

static int run_command(char *line)
{
	char cmd[32] = "", arg[32] = "";
	u64 a = 0, b = 0, c = 0;
	int n;

	n = sscanf(line, "%31s %31s %llu %llu %llu", cmd, arg, &a, &b, &c);
	result_len = 0;
	result[0] = '\0';
	if (n >= 3 && !strcmp(cmd, "irqoff"))
		return cmd_irqoff(arg, a, n >= 4 ? b : 1);
	if (n >= 3 && !strcmp(cmd, "irqline"))
		return cmd_irqline(arg, a);
	if (n == 2 && !strcmp(cmd, "fire")) {
		if (kstrtou64(arg, 10, &a))
			return -EINVAL;
		return cmd_fire(a);
	}
	if (n >= 4 && !strcmp(cmd, "hold"))
		return cmd_hold(arg, a, b, n >= 5 ? c : 2);
	if (n == 2 && !strcmp(cmd, "order"))
		return cmd_order(arg);
	if (n == 2 && !strcmp(cmd, "classes"))
		return cmd_classes(arg);
	if (n == 1 && (!strcmp(cmd, "deadlock") || !strcmp(cmd, "hung")))
		return cmd_scenario(cmd);
	if (n == 3 && !strcmp(cmd, "lockloop"))
		return cmd_lockloop(arg, a);
	if (n == 1 && !strcmp(cmd, "release"))
		return cmd_release();
	if (n == 1 && !strcmp(cmd, "percpu"))
		return cmd_percpu();
	return -EINVAL;
}

static ssize_t ctl_write(struct file *file, const char __user *buf, size_t len, loff_t *ppos)
{
	char line[128];
	int err;

	if (len >= sizeof(line))
		return -EINVAL;
	if (copy_from_user(line, buf, len))
		return -EFAULT;
	line[len] = '\0';
	if (mutex_lock_killable(&ctl_lock))
		return -EINTR;
	err = run_command(line);
	if (err) {
		result_len = 0;
		out("{\"error\":%d}\n", err);
	}
	mutex_unlock(&ctl_lock);
	return err ? err : len;
}

static ssize_t ctl_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	ssize_t ret;

	if (mutex_lock_killable(&ctl_lock))
		return -EINTR;
	ret = simple_read_from_buffer(buf, len, ppos, result, result_len);
	mutex_unlock(&ctl_lock);
	return ret;
}

static const struct proc_ops ctl_ops = {
	.proc_write = ctl_write,
	.proc_read = ctl_read,
	.proc_lseek = default_llseek,
};

static struct proc_dir_entry *ctl_entry;
static int fx_irq_dev;

static int __init fixture_init(void)
{
	int err;

	result = kvzalloc(RESULT_SIZE, GFP_KERNEL);
	if (!result)
		return -ENOMEM;
	fx_foo_cache = kmem_cache_create(FX_FOO_CACHE, sizeof(struct fx_foo), 0, 0, fx_foo_ctor);
	fx_bar_cache = kmem_cache_create(FX_BAR_CACHE, sizeof(struct fx_bar), 0, 0, fx_bar_ctor);
	if (!fx_foo_cache || !fx_bar_cache) {
		err = -ENOMEM;
		goto free_result;
	}
	/* no owner module: request_irq would pin us and block rmmod */
	fx_irq = __irq_alloc_descs(-1, 0, 1, NUMA_NO_NODE, NULL, NULL);
	if (fx_irq < 0) {
		err = fx_irq;
		goto free_result;
	}
	irq_set_chip_and_handler(fx_irq, &dummy_irq_chip, handle_simple_irq);
	irq_modify_status(fx_irq, IRQ_NOREQUEST | IRQ_NOPROBE, 0);
	err = request_irq(fx_irq, fx_irq_handler, 0, "irqlock_fixture", &fx_irq_dev);
	if (err)
		goto free_desc;
	fx_irq_work = IRQ_WORK_INIT_HARD(fx_irq_work_fn);
	ctl_entry = proc_create("irqlock_fixture", 0600, NULL, &ctl_ops);
	if (!ctl_entry) {
		err = -ENOMEM;
		goto free_irq;
	}
	pr_info("irqlock_fixture: loaded, irq %d\n", fx_irq);
	return 0;
free_irq:
	free_irq(fx_irq, &fx_irq_dev);
free_desc:
	irq_free_desc(fx_irq);
free_result:
	kmem_cache_destroy(fx_foo_cache);	/* NULL is fine */
	kmem_cache_destroy(fx_bar_cache);
	kvfree(result);
	return err;
}

static void __exit fixture_exit(void)
{
	proc_remove(ctl_entry);
	mutex_lock(&ctl_lock);
	cmd_release();
	line_release();
	leak_reader_reap();	/* a read_leak without its after_leak */
	mutex_unlock(&ctl_lock);
	irq_work_sync(&fx_irq_work);
	free_irq(fx_irq, &fx_irq_dev);
	irq_free_desc(fx_irq);
	kmem_cache_destroy(fx_foo_cache);
	kmem_cache_destroy(fx_bar_cache);
	kvfree(result);
}

module_init(fixture_init);
module_exit(fixture_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("irqlock test fixture: ground truth for IRQ-off, IRQ line, lock and deadlock tests");
