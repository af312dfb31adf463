"""The ctypes binding against the C headers, and an object opened without a kernel."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

from irqlock.bpf.libbpf import BpfProgInfo, LibbpfError, rejection_reason
from irqlock.bpf.loader import BpfObject
from irqlock.errors import IrqlockError
from irqlock.kernel.perf import PerfEventAttr

C_PROGRAM = """
#include <stddef.h>
#include <stdio.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
int main(void) {
    printf("%zu %zu %zu\\n", offsetof(struct bpf_prog_info, recursion_misses),
           offsetof(struct bpf_prog_info, id), sizeof(struct perf_event_attr));
    return 0;
}
"""


def test_struct_layouts_match_uapi_headers(tmp_path: Path) -> None:
    source, binary = tmp_path / "layout.c", tmp_path / "layout"
    source.write_text(C_PROGRAM)
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True)
    misses, prog_id, attr_size = map(int, subprocess.run([str(binary)], capture_output=True,
                                                          text=True, check=True).stdout.split())
    assert BpfProgInfo.recursion_misses.offset == misses
    assert BpfProgInfo.id.offset == prog_id
    assert ctypes.sizeof(PerfEventAttr) <= attr_size  # an older, valid attr size


def test_rodata_round_trip_before_load() -> None:
    with BpfObject.open("hitcount") as obj:
        assert set(obj.program_names()) == {"hit_fentry", "hit_kprobe"}
        obj.set_rodata(target_comm=b"fx_hold", target_comm_len=7, target_arg0=0xFFFF8880DEADBEEF)
        assert obj.read_global("target_comm_len", ".rodata") == 7
        assert obj.read_global("target_arg0", ".rodata") == 0xFFFF8880DEADBEEF
        assert obj.read_global("lost_events") == 0


def test_rodata_errors_are_clear() -> None:
    with BpfObject.open("hitcount") as obj:
        with pytest.raises(IrqlockError, match="no const volatile variable nope"):
            obj.set_rodata(nope=1)
        with pytest.raises(IrqlockError, match="exceeds 16 bytes"):
            obj.set_rodata(target_comm=b"x" * 17)


def test_plan_keeps_one_program_of_the_pair() -> None:
    with BpfObject.open("hitcount") as obj:
        att = obj.plan_function("hit", "_raw_spin_lock_irqsave", use_fentry=False)
        assert (att.program, att.method) == ("hit_kprobe", "kprobe")


def test_missing_object_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IrqlockError, match="open BPF object"):
        BpfObject.open("nothing", tmp_path / "nothing.bpf.o")


# libbpf's log of 6.12 refusing irqoff's tick program (FRED made pt_regs->cs two bytes wide)
REFUSED_LOAD_LOG = [
    "libbpf: prog 'tick_ring': BPF program load failed: Permission denied\n",
    "libbpf: prog 'tick_ring': -- BEGIN PROG LOAD LOG --\n"
    "0: R1=ctx(off=0,imm=0) R10=fp0\n"
    "; int BPF_PROG(tick_ring, struct bpf_perf_event_data *ctx)\n"
    "5: (69) r1 = *(u16 *)(r6 +136)\n"
    "invalid bpf_context access off=136 size=2\n"
    "processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n"
    "\n-- END PROG LOAD LOG --\n",
    "libbpf: failed to load object 'irqoff'\n",
]


def test_rejection_reason_is_the_verifiers_last_word() -> None:
    assert rejection_reason(REFUSED_LOAD_LOG) == \
        "tick_ring: invalid bpf_context access off=136 size=2"
    error = LibbpfError("load BPF object irqoff", -13, REFUSED_LOAD_LOG)
    assert str(error).splitlines()[0] == ("load BPF object irqoff: Permission denied "
                                          "(tick_ring: invalid bpf_context access off=136 size=2)")
    # a failure that is not the verifier's keeps its one line
    assert rejection_reason(["libbpf: failed to find BTF for extern 'x'\n"]) == ""
    assert str(LibbpfError("open x", -2, [])) == "open x: No such file or directory"
