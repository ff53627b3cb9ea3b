// The VMX unit of one logical processor: the current-VMCS pointer, VMX non-root operation,
// and the controls of the current VMCS cached at VM entry for the checks non-root execution
// makes on every exiting instruction (SDM Vol. 3 Chapters 25-28).
#pragma once
#include <array>
#include <cstdint>

#include "arch/segment.h"
#include "arch/vmx.h"
#include "cpu/vmx/vmcs_region.h"

namespace nestvm::cpu {

// The VM-execution, exit and entry controls in force while in VMX non-root operation,
// copied from the current VMCS at VM entry (the processor may cache them; software changes
// them only through VMWRITE between entries).
struct VmxControls {
  uint32_t pin = 0, proc = 0, proc2 = 0, exit = 0, entry = 0;
  uint32_t exception_bitmap = 0, pfec_mask = 0, pfec_match = 0;
  uint64_t cr0_mask = 0, cr4_mask = 0, cr0_shadow = 0, cr4_shadow = 0;
  uint32_t cr3_target_count = 0;
  std::array<uint64_t, 4> cr3_targets{};
  uint64_t io_bitmap_a = 0, io_bitmap_b = 0, msr_bitmap = 0;
  uint64_t tsc_offset = 0;
  uint64_t eptp = 0;
  uint16_t vpid = 0;
  uint64_t virtual_apic_page = 0, apic_access_addr = 0;
  uint32_t tpr_threshold = 0;
  uint64_t vmread_bitmap = 0, vmwrite_bitmap = 0, vmcs_link_pointer = ~0ull;
  uint32_t ple_gap = 0, ple_window = 0;
  uint64_t xss_exit_bitmap = 0;

  bool has(uint32_t proc_bit) const { return proc & proc_bit; }
  // A secondary control is in force only with "activate secondary controls" (SDM §25.6.2).
  bool has2(uint32_t proc2_bit) const { return (proc & arch::proc::kActivateSecondary) && (proc2 & proc2_bit); }
};

// Exit information a VM exit writes into the VMCS (SDM §25.9).
struct VmExitInfo {
  uint32_t reason = 0;
  uint64_t qualification = 0;
  uint64_t guest_linear_address = 0;
  uint64_t guest_physical_address = 0;
  uint32_t instruction_len = 0;
  uint32_t instruction_info = 0;
  uint32_t intr_info = 0;        // VM_EXIT_INTR_INFO
  uint32_t intr_error_code = 0;
  uint32_t idt_vectoring_info = 0;
  uint32_t idt_vectoring_error_code = 0;
  uint64_t io_rcx = 0, io_rsi = 0, io_rdi = 0, io_rip = 0;
};

// PAUSE-loop exiting (SDM Vol. 3 §26.1.3): TSC values of the last PAUSE at CPL 0 and of the
// first PAUSE of the current loop. VM entry clears `active`: its first PAUSE at CPL 0 starts a loop.
struct PauseLoop {
  uint64_t last = 0, first = 0;
  bool active = false;
};

struct Event;

// The event state of VMX non-root operation (cpu/vmx/nonroot_events.cpp, event_injection.cpp,
// exit_event_info.cpp, preemption_timer.cpp, apic_access.cpp).
struct VmxEvents {
  // SDM §27.7.1: with "virtual NMIs", interruptibility bit 3 is virtual-NMI blocking, tracked
  // apart from the blocking of real NMIs (CpuState::nmi_blocking).
  bool virtual_nmi_blocking = false;
  // An MTF VM exit is pending at the next instruction boundary (SDM §26.5.2, §27.7.8).
  bool mtf_pending = false;
  // Cpu::instructions_retired() at VM entry: an instruction completed since, for MTF.
  uint64_t mtf_retired_mark = 0;
  // The VMX-preemption timer as a host-TSC deadline (SDM §26.5.1): no per-instruction cost.
  bool timer_armed = false;
  uint64_t timer_deadline = 0;
  // The IRET being executed cleared (virtual-)NMI blocking: "NMI unblocking due to IRET"
  // (SDM §28.2.3) if it faults or exits.
  bool iret_unblocked_nmi = false;
  // The event whose delivery through the IDT is in progress: IDT-vectoring information for an
  // exit during delivery (SDM §28.2.4). Points into Cpu::deliver_event's frame.
  const Event* delivering = nullptr;
  // The state delivery changes before its last memory access (CS, SS, RSP, RFLAGS): the guest
  // state an exit during delivery saves, as if delivery had not begun (SDM §28.1).
  std::array<arch::Segment, arch::kNumSegRegs> pre_delivery_seg{};
  uint64_t pre_delivery_rsp = 0, pre_delivery_rflags = 0;
  // Debug exceptions left pending by an exit that took priority over them (an MTF exit over a
  // single-step trap): GUEST_PENDING_DBG_EXCEPTIONS at the exit (SDM §26.5.2, §28.3.4).
  uint64_t pending_dbg = 0;
  // The page of "virtualize APIC accesses" (SDM §30.4), ~0 when the control is off.
  uint64_t apic_access_page = ~0ull;
};

struct VmxState {
  uint64_t current_vmcs = ~0ull;  // host-physical address from VMPTRLD; ~0 when invalid
  VmcsRegion current;             // its host mapping
  bool non_root = false;
  VmxControls ctl;
  bool exit_pending = false;      // a VM exit happened; run() returns RunExit::kVmExit
  PauseLoop pause_loop;
  VmxEvents events;
};

}  // namespace nestvm::cpu
