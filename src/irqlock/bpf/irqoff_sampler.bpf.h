// SPDX-License-Identifier: GPL-2.0
/*
 * irqoff.bpf.c, its sampled sources (kernels without preemptirq tracepoints): softirq-off
 * windows from the ticks that see preempt_count's softirq bits set, and IRQ-off windows
 * from the gaps between a per-CPU cpu-clock sampler's ticks.  They read the options,
 * maps and window helpers of irqoff.bpf.c, which includes this where they belong.
 */

/* ---- sampled: softirq-off windows ------------------------------------------- *
 * Softirqs are off while preempt_count's softirq bits are set (local_bh_disable, or
 * a softirq being served).  The ticks that see them set bound the window: it began
 * between the tick before the first of them and that one, and ended between the
 * last of them and the tick after.  Each edge is put midway; error_ns is the sum of
 * the two half intervals. */

static __always_inline void softirq_window_end(void *ctx, struct sample_state *s, __u64 now)
{
	struct window_state *bh = state(KIND_SOFTIRQ);

	if (!bh || !bh->open)
		return;
	bh->error_ns = s->bh_start_error_ns + (now - s->bh_last_ns) / 2;
	close_window(ctx, bh, KIND_SOFTIRQ, s->bh_last_ns + (now - s->bh_last_ns) / 2);
}

static __always_inline void sample_softirq_tick(void *ctx, struct sample_state *s, __u64 now)
{
	struct window_state *bh = state(KIND_SOFTIRQ);
	__u64 prev = s->prev_tick_ns;

	if (!bh)
		return;
	if (!(this_cpu_preempt_count() & SOFTIRQ_MASK)) {	/* the bits of the interrupted context */
		softirq_window_end(ctx, s, now);
		return;
	}
	s->bh_last_ns = now;
	/* A tick's stack can come out as one frame, where the unwinder has nothing to go on
	 * (seen: a tick at __static_call_text_end+0x0, the thunks that follow it): a later
	 * tick in the window tells where softirqs are off instead. */
	if (bh->open) {
		if (bh->disable_stack_bytes <= (int)sizeof(__u64))
			capture_disable_site(ctx, bh);
		return;
	}
	capture_disable_site(ctx, bh);	/* where softirqs are off: this tick's stack */
	capture_task(bh);
	bh->open = 1;
	bh->source = SOURCE_SAMPLE;
	bh->site = SITE_SEEN;
	bh->disable_ip = 0;
	bh->disable_parent_ip = 0;
	s->bh_start_error_ns = prev ? (now - prev) / 2 : 0;
	bh->start_ns = now - s->bh_start_error_ns;
}

/* No lock may be held with interrupts off across a switch, nor softirqs be off:
 * windows open here are stale or over.  For the IRQ sampler, a switch is like a
 * tick: interrupts are back on right after it, so a gap is measured from here
 * (from nothing when idle comes in: idle may wait for an interrupt with
 * interrupts off). */
SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	struct sample_state *s = bpf_map_lookup_elem(&samples, &zero);
	__u64 now = bpf_ktime_get_ns();

	irqs_are_on();
	if (!s)
		return 0;
	if (sample_softirq)
		softirq_window_end(ctx, s, now);
	s->last_ns = next->pid ? now : 0;
	return 0;
}

/* ---- sampled: cpu-clock gaps --------------------------------------------- */

#define STI 0xfb
#define POPF 0x9d
#define SITE_BYTES 10	/* an sti and the longest NOP padding after it */

/* Whether code[0..len) is one instruction that can follow an sti where interrupts come back
 * on: the NOP padding of a patched irq_enable site (sti over a 6-byte call, kernel and
 * modules alike), or a one-byte instruction (push, pop, nop, ret). */
static __always_inline bool shadow_instruction(const __u8 *code, int len)
{
	switch (len) {
	case 1:
		return (code[0] >= 0x50 && code[0] <= 0x5f) || code[0] == 0x90 || code[0] == 0xc3;
	case 2:
		return code[0] == 0x66 && code[1] == 0x90;
	case 3:
		return code[0] == 0x0f && code[1] == 0x1f && code[2] == 0x00;
	case 4:
		return code[0] == 0x0f && code[1] == 0x1f && code[2] == 0x40 && code[3] == 0x00;
	case 5:
		return code[0] == 0x0f && code[1] == 0x1f && code[2] == 0x44 && code[3] == 0x00 &&
		       code[4] == 0x00;
	case 6:
		return code[0] == 0x66 && code[1] == 0x0f && code[2] == 0x1f && code[3] == 0x44 &&
		       code[4] == 0x00 && code[5] == 0x00;
	case 7:
		return code[0] == 0x0f && code[1] == 0x1f && code[2] == 0x80 && !code[3] &&
		       !code[4] && !code[5] && !code[6];
	case 8:
		return code[0] == 0x0f && code[1] == 0x1f && code[2] == 0x84 && !code[3] &&
		       !code[4] && !code[5] && !code[6] && !code[7];
	}
	return false;
}

/* The privilege level the tick interrupted (0: the kernel).  A perf_event program's context
 * is the UAPI pt_regs, whose layout is ABI; since FRED (6.9) the kernel's BTF has cs as a u16
 * in a union, and a CO-RE read of it would load 2 bytes, which the verifier refuses for this
 * context: the 8-byte word is read at its ABI place (struct pt_regs' 18th). */
#define PT_REGS_CS_WORD 17
static __always_inline __u64 tick_ring(struct bpf_perf_event_data *ctx)
{
	return ((const __u64 *)ctx)[PT_REGS_CS_WORD] & 3;
}

/* Where the closing tick of a gap landed, as evidence that interrupts were off.  (The iret
 * that ends a hardirq handler lets a held-back tick in too, but it returns to any code: a
 * tick landing there looks like one a hypervisor ran late, and is not taken as evidence.) */
static __always_inline __u32 tick_site(struct bpf_perf_event_data *ctx)
{
	__u8 code[SITE_BYTES] = {};
	__u64 ip = PT_REGS_IP(&ctx->regs);

	if (bpf_probe_read_kernel(code, sizeof(code), (void *)(ip - SITE_BYTES)))
		return SITE_NONE;
	if (code[SITE_BYTES - 1] == POPF)
		return SITE_POPF;
	/* an sti, then the one instruction of its shadow, then this tick */
	for (int len = 1; len < SITE_BYTES - 1; len++)
		if (code[SITE_BYTES - 1 - len] == STI &&
		    shadow_instruction(&code[SITE_BYTES - len], len))
			return SITE_STI;
	return SITE_NONE;
}

/* No tick came to this CPU from `prev` until `until`, though it kept running: it switched
 * tasks, idled or ran user code in between (no task kept interrupts off all along, so no
 * window explains it).  A hypervisor holding back the timer interrupt does that (under TCG
 * every CPU's at once, for many milliseconds): the sampler saw nothing there, and says so
 * rather than let a window it could not see look like none. */
static __always_inline void note_blind(struct bpf_perf_event_data *ctx, __u64 prev, __u64 until)
{
	struct irqoff_event *e;
	__u32 cpu;

	if (!prev || until - prev < 2 * sample_period_ns)
		return;
	__sync_fetch_and_add(&blind_spans, 1);
	__sync_fetch_and_add(&blind_ns, until - prev);
	cpu = bpf_get_smp_processor_id();
	if (until - prev < threshold_ns || (target_cpu >= 0 && cpu != target_cpu))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->start_ns = prev;
	e->end_ns = until;
	e->cpu = cpu;
	e->kind = KIND_HARDIRQ;
	e->source = SOURCE_SAMPLE;
	e->site = SITE_BLIND;
	e->disable_stack_bytes = -1;
	e->enable_stack_bytes = -1;
	bpf_ringbuf_submit(e, 0);
}

SEC("perf_event")
int sample_tick(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0, slot = SAMPLER_SLOT, pid = (__u32)bpf_get_current_pid_tgid();
	struct sample_state *s = bpf_map_lookup_elem(&samples, &zero);
	struct window_state *lock = state(KIND_HARDIRQ);
	struct window_state *st = bpf_map_lookup_elem(&windows, &slot);
	__u64 now = bpf_ktime_get_ns(), last, prev;

	if (!s || !lock || !st)
		return 0;
	irqs_are_on();	/* the tick fired, so interrupts are on */
	if (sample_softirq)
		sample_softirq_tick(ctx, s, now);
	/* How late ticks come when nothing held them back for long: a short irqs-off
	 * section, or a hypervisor that ran this CPU late.  A sampled window's end is
	 * a tick, so it may be that late too: reported beside error_ns. */
	if (s->prev_tick_ns) {
		__u64 since = now - s->prev_tick_ns;

		if (since > sample_period_ns && since < 2 * sample_period_ns &&
		    since - sample_period_ns > s->late_max_ns)
			s->late_max_ns = since - sample_period_ns;
	}
	prev = s->prev_tick_ns;
	s->before_tick_ns = prev;
	s->prev_tick_ns = now;
	if (!sample_hardirq)
		return 0;
	last = s->last_ns;
	s->last_ns = pid ? now : 0;
	/* Interrupts came back on where this tick landed: in the kernel, in a task. */
	if (!last || !pid || tick_ring(ctx) != 0) {
		note_blind(ctx, prev, now);
		return 0;
	}
	/* A switch into this task after the last tick: the ticks due before it did not come. */
	note_blind(ctx, prev, last);
	/* A tick was due at most one period after last and could not fire: the
	 * window began in [last, last + period] and ended just before now. */
	if (now - last < 2 * sample_period_ns)
		return 0;
	/* An exact lock window that ended just before this tick is what held it back. */
	if (lock->last_end_ns > last && now - lock->last_end_ns < sample_period_ns)
		return 0;
	st->open = 1;
	st->source = SOURCE_SAMPLE;
	st->site = machine_stalled(last, now) ? SITE_STALL : tick_site(ctx);
	/* The tick due after `last` was held back: the window began in [last, last + period
	 * + how late ticks come at most in this run]; it ended when this tick could come. */
	st->error_ns = (sample_period_ns + s->late_max_ns) / 2;
	st->start_ns = last + st->error_ns;
	st->disable_ip = 0;
	st->disable_parent_ip = 0;
	st->disable_stack_bytes = -1;	/* where it went off is unknown to a sampler */
	capture_task(st);
	close_window(ctx, st, KIND_HARDIRQ, now);
	return 0;
}
