// The Cpu object: construction, reset, derived-state maintenance and the execution loop.
#include "cpu/cpu.h"

#include "arch/msr_index.h"
#include <cstdlib>

#include "cpu/block_cache.h"
#include "cpu/jit/jit.h"
#include "cpu/memory.h"
#include "cpu/vmx/capabilities.h"

namespace nestvm::cpu {

using namespace arch;

Cpu::Cpu(PhysMem& mem, const CpuModel& model, IoBus* io)
    : mem_(mem), model_(model), io_(io), blocks_(std::make_unique<BlockCache>(model)) {
  mem_.code_tracker().register_tlb(&tlb_);
  vmx_caps_ = silicon_vmx_capabilities(model_, cr4_valid_bits());
  reset();
  const char* jit = std::getenv("NESTVM_JIT");
  set_jit(!(jit && jit[0] == '0'));
}

void Cpu::set_jit(bool on, unsigned hot_threshold) {
  jit_threshold_ = uint16_t(hot_threshold < 0xffff ? hot_threshold : 0xffff);
  if (on == (jit_ != nullptr)) return;
  if (on) {
    jit_ = std::make_unique<jit::Jit>(*this);
    blocks_->attach_jit(jit_.get());
    return;
  }
  blocks_->attach_jit(nullptr);
  blocks_->flush();      // blocks point at translations about to go away
  tlb_.bump_epoch();     // and links at blocks
  jit_.reset();
}

Cpu::~Cpu() { mem_.code_tracker().unregister_tlb(&tlb_); }

void Cpu::reset(bool init) {
  // SDM Vol. 3 Table 10-1: state after power-up / RESET / INIT.
  const MsrState keep_msr = state.msr;
  const FpuState keep_fpu = state.fpu;
  state = CpuState{};
  if (init) {
    // INIT leaves the x87/SSE state, MTRRs and most MSRs alone; EFER is cleared.
    state.fpu = keep_fpu;
    state.msr = keep_msr;
    state.msr.efer = 0;
  }
  state.gpr[kRdx] = 0x600;  // family/model/stepping placeholder (CPUID.1:EAX in the model)
  const CpuidResult id = model_.cpuid(1, 0);
  state.gpr[kRdx] = id.eax;
  for (auto& s : state.seg) {
    s.selector = 0;
    s.base = 0;
    s.limit = 0xffff;
    s.ar = ar::kP | ar::kS | ar::kWritable | ar::kAccessed;  // 0x93: present read/write data
  }
  Segment& cs = state.seg[unsigned(SegReg::kCS)];
  cs.selector = 0xf000;
  cs.base = 0xffff0000;
  cs.ar = ar::kP | ar::kS | ar::kCode | ar::kReadable | ar::kAccessed;  // 0x9b
  state.rip = 0xfff0;
  state.ldtr = {0, 0, 0xffff, ar::kP | sys_type::kLdt};
  state.tr = {0, 0, 0xffff, ar::kP | sys_type::kTss16Busy};
  state.gdtr = {0, 0xffff};
  state.idtr = {0, 0xffff};
  if (!init) state.msr.apic_base = apic_base::kDefaultBase | apic_base::kEnable | apic_base::kBsp;
  lf = LazyFlags{};
  has_pending_event_ = false;
  intercepted_ = false;
  vmx_.non_root = false;
  vmx_.exit_pending = false;
  nmi_pending_ = false;
  tlb_.switch_context(TlbContext{}, false);  // VMX root operation: VPID 0, no EPT
  tlb_.flush_everything();
  refresh_mode();
}

void Cpu::set_rflags(uint64_t v) {
  const uint64_t old = state.rflags;
  state.rflags = (v & rflags::kDefined) | rflags::kFixed1;
  lf.op = FlagOp::kMaterialized;
  // TF and RF make the loop go one instruction at a time: stop following block links.
  if ((old ^ state.rflags) & (rflags::kTF | rflags::kRF)) tlb_.bump_epoch();
  if ((old ^ state.rflags) & rflags::kVM) refresh_mode();
  else if ((old ^ state.rflags) & rflags::kAC) {
    if (cpl_ < 3) mmu_idx_ = (state.cr4 & cr4::kSMAP) && (state.rflags & rflags::kAC) ? kMmuSupervisorAc : kMmuSupervisor;
  }
}

void Cpu::refresh_segment(SegReg s) {
  const Segment& seg = state.seg[unsigned(s)];
  SegCache& c = seg_cache_[unsigned(s)];
  if (code_size_ == 8) {
    // 64-bit mode: no limit or type checks; only FS and GS have a base (SDM Vol. 3 §3.4.4).
    c.base = (s == SegReg::kFS || s == SegReg::kGS) ? seg.base : 0;
    c.rd_lo = c.wr_lo = 0;
    c.rd_hi = c.wr_hi = ~0ull;
    return;
  }
  c.base = seg.base & 0xffffffffull;
  const uint32_t a = seg.ar;
  const bool legacy_checks = protected_mode() && !v86_mode();
  if (legacy_checks && ((a & ar::kUnusable) || !(a & ar::kP))) {
    c.rd_lo = c.wr_lo = 1;  // empty ranges: every access faults
    c.rd_hi = c.wr_hi = 0;
    return;
  }
  uint64_t lo = 0, hi = seg.limit;
  if (!(a & ar::kCode) && (a & ar::kExpandDown)) {  // expand-down data (SDM Vol. 3 §5.3)
    lo = uint64_t(seg.limit) + 1;
    hi = (a & ar::kDB) ? 0xffffffffull : 0xffff;
  }
  const bool readable = !legacy_checks || !(a & ar::kCode) || (a & ar::kReadable);
  const bool writable = !legacy_checks || (!(a & ar::kCode) && (a & ar::kWritable));
  c.rd_lo = readable ? lo : 1;
  c.rd_hi = readable ? hi : 0;
  c.wr_lo = writable ? lo : 1;
  c.wr_hi = writable ? hi : 0;
}

void Cpu::refresh_mode() {
  const Segment& cs = state.seg[unsigned(SegReg::kCS)];
  const Segment& ss = state.seg[unsigned(SegReg::kSS)];
  const bool pe = state.cr0 & cr0::kPE;
  const bool lma = state.msr.efer & efer::kLMA;
  if (!pe) {
    // Real mode uses the cached CS.D too: code right after clearing CR0.PE (before the far
    // jump that reloads CS) still runs with a 32-bit default size.
    decode_mode_ = (cs.ar & ar::kDB) ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_REAL_16;
    code_size_ = (cs.ar & ar::kDB) ? 4 : 2;
    cpl_ = 0;
  } else if (v86_mode()) {
    decode_mode_ = ZYDIS_MACHINE_MODE_LEGACY_16;
    code_size_ = 2;
    cpl_ = 3;
  } else {
    cpl_ = uint8_t(ar::dpl(ss.ar));  // CPL is SS.DPL (SDM Vol. 3 §5.5, as VMX defines it)
    if (lma && (cs.ar & ar::kL)) {
      decode_mode_ = ZYDIS_MACHINE_MODE_LONG_64;
      code_size_ = 8;
    } else if (lma) {
      decode_mode_ = (cs.ar & ar::kDB) ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_COMPAT_16;
      code_size_ = (cs.ar & ar::kDB) ? 4 : 2;
    } else {
      decode_mode_ = (cs.ar & ar::kDB) ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_LEGACY_16;
      code_size_ = (cs.ar & ar::kDB) ? 4 : 2;
    }
  }
  stack_size_ = code_size_ == 8 ? 8 : (pe && !v86_mode() && (ss.ar & ar::kDB)) ? 4 : (!pe && (ss.ar & ar::kDB)) ? 4 : 2;
  la_mask_ = code_size_ == 8 ? ~0ull : 0xffffffffull;
  ip_mask_ = code_size_ == 8 ? ~0ull : code_size_ == 4 ? 0xffffffffull : 0xffff;
  fetch_limit_ = code_size_ == 8 ? ~0ull : cs.limit;
  if (!(state.cr0 & cr0::kPG)) paging_mode_ = PagingMode::kNone;
  else if (!(state.cr4 & cr4::kPAE)) paging_mode_ = PagingMode::k32Bit;
  else if (lma) paging_mode_ = PagingMode::k4Level;
  else paging_mode_ = PagingMode::kPae;
  pcid_ = (state.cr4 & cr4::kPCIDE) ? uint16_t(state.cr3 & cr3::kPcidMask) : 0;
  tlb_.set_pcid(pcid_);
  if (cpl_ == 3) mmu_idx_ = kMmuUser;
  else mmu_idx_ = (state.cr4 & cr4::kSMAP) && (state.rflags & rflags::kAC) ? kMmuSupervisorAc : kMmuSupervisor;
  for (unsigned s = 0; s < kNumSegRegs; ++s) refresh_segment(SegReg(s));
  tlb_.bump_epoch();  // decode mode, CPL and fetch limit may have changed: block links die
}

void Cpu::set_intr_line(bool asserted) {
  intr_line_.store(asserted, std::memory_order_release);
  if (asserted) attention_.fetch_or(attention::kIntr, std::memory_order_release);
}

void Cpu::raise_nmi() { attention_.fetch_or(attention::kNmi, std::memory_order_release); }

void Cpu::kick() { attention_.fetch_or(attention::kKick, std::memory_order_release); }

void Cpu::raise_init() { attention_.fetch_or(attention::kInit, std::memory_order_release); }

void Cpu::raise_sipi(uint8_t vector) {
  sipi_vector_.store(vector, std::memory_order_relaxed);
  attention_.fetch_or(attention::kSipi, std::memory_order_release);
}

void Cpu::iret_unblock_nmis() {
  if (vmx_.non_root) return vmx_iret_unblock_nmis();
  state.nmi_blocking = false;
  if (nmi_pending_) attention_.fetch_or(attention::kNmi, std::memory_order_relaxed);  // held NMI: look again
}

uint32_t Cpu::io_in(uint16_t port, unsigned size) { return io_ ? io_->in(port, size) : (~0u >> (32 - 8 * size)); }

void Cpu::io_out(uint16_t port, unsigned size, uint32_t v) {
  if (io_) io_->out(port, size, v);
}

// Interrupts, NMIs, kicks and HLT, checked between blocks. Returns false if run() must return.
bool Cpu::service_attention(RunExit& exit) {
  if (vmx_.non_root) return vmx_service_events(exit);  // SDM Chapter 26 priorities (cpu/vmx/)
  uint32_t att = attention_.load(std::memory_order_acquire);
  if (att & attention::kKick) {
    attention_.fetch_and(~attention::kKick, std::memory_order_acq_rel);
    exit = RunExit::kKicked;
    return false;
  }
  if (att & attention::kNmi) {
    attention_.fetch_and(~attention::kNmi, std::memory_order_acq_rel);
    nmi_pending_ = true;
  }
  if (state.activity == Activity::kShutdown) {
    exit = RunExit::kShutdown;
    return false;
  }
  const bool shadow = state.sti_blocking || state.movss_blocking;
  // SDM Vol. 3 §6.9: NMI before maskable interrupts; both are held off by the shadows.
  if (nmi_pending_ && !state.nmi_blocking && !shadow && state.activity != Activity::kWaitForSipi) {
    nmi_pending_ = false;
    state.activity = Activity::kActive;
    if (!deliver_event({uint8_t(Vector::kNMI), EventType::kNmi, false, 0, 0})) {
      exit = RunExit::kShutdown;
      return false;
    }
    state.nmi_blocking = true;
  } else if (intr_line_.load(std::memory_order_acquire) && (state.rflags & rflags::kIF) && !shadow &&
             state.activity != Activity::kWaitForSipi) {
    const int vector = io_ ? io_->ack_interrupt() : -1;
    if (vector >= 0) {
      state.activity = Activity::kActive;
      if (!deliver_event({uint8_t(vector), EventType::kExternalInterrupt, false, 0, 0})) {
        exit = RunExit::kShutdown;
        return false;
      }
    }
  }
  if (!intr_line_.load(std::memory_order_acquire) && !nmi_pending_)
    attention_.fetch_and(~(attention::kIntr | attention::kNmi), std::memory_order_acq_rel);
  if (state.activity != Activity::kActive) {
    exit = state.activity == Activity::kShutdown ? RunExit::kShutdown : RunExit::kHalted;
    return false;
  }
  return true;
}

const Block* Cpu::find_block(uint64_t& la) {
  la = (seg_cache_[unsigned(SegReg::kCS)].base + state.rip) & la_mask_;
  uint8_t* host;
  uint64_t pa;
  const TlbEntry& e = tlb_.entry(mmu_idx_, la);
  if (__builtin_expect(e.tag_exec == ((la & kPageMask) | tlb_.tag()) && is_canonical(la), 1)) {
    host = reinterpret_cast<uint8_t*>(la + e.addend);
    pa = tlb_.info(mmu_idx_, la).pa_page | (la & (kPageSize - 1));
  } else {
    if (state.rip > fetch_limit_) { fault(Vector::kGP, 0); return nullptr; }
    if (translate_fetch(la, host, pa) != Status::kNext) return nullptr;
    if (!host) {  // executing from a non-RAM address: the bus reads all ones, an invalid opcode
      fault(Vector::kUD);
      return nullptr;
    }
    host += la & (kPageSize - 1);
  }
  return blocks_->get(*this, la, host, pa);
}

// Runs a block. During each handler RIP is the instruction's own address, set from the block's
// start and the instruction's offset (a store, not a read-modify-write chain through memory).
// Returns kNext when execution fell off the end of the block (or stopped early after
// self-modifying code), otherwise the status of the instruction that ended it.
Status Cpu::execute_block(const Block& b) {
  const Insn* i = b.insns;
  const Insn* const end = i + b.n;
  const uint64_t base = state.rip;
  stop_block_ = false;
  Status st;
  for (;;) {
    state.rip = base + i->off;
    st = i->fn(*this, *i);
    if (__builtin_expect(st != Status::kNext, 0)) break;
    ++i;
    if (i == end || stop_block_) {
      retired_ += unsigned(i - b.insns);
      state.rip = (base + (i - 1)->off + (i - 1)->len) & ip_mask_;
      return Status::kNext;
    }
  }
  switch (st) {
    case Status::kEndBlock: state.rip += i->len; ++i; break;
    case Status::kJumped: case Status::kExit: ++i; break;
    default: break;  // kFault: the instruction did not complete
  }
  retired_ += unsigned(i - b.insns);
  state.rip &= ip_mask_;
  return st;
}

// The block linked from the end of `from` at the current RIP, or nullptr when there is no
// valid link (the loop then goes back through its full checks and a lookup).
const Block* Cpu::next_linked_block(const Block& from) {
  const uint64_t rip = state.rip;
  const uint32_t epoch = tlb_.epoch();
  for (const BlockLink& l : from.links) {
    if (l.rip == rip && l.epoch == epoch) {
      const Block* to = l.to;
      return to->gen == to->meta->code_gen.load(std::memory_order_acquire) ? to : nullptr;
    }
  }
  return nullptr;
}

// One instruction with every per-instruction rule applied: the interrupt shadows, TF single-step
// traps (SDM Vol. 3 §18.3.1.4), CS-limit checks for blocks that would run past the limit.
void Cpu::step_one() {
  uint64_t la;
  const bool tf = state.rflags & rflags::kTF;
  const bool shadow = state.sti_blocking || state.movss_blocking;
  const bool sti_was = state.sti_blocking, movss_was = state.movss_blocking;
  const Block* b = find_block(la);
  if (!b) return;
  const Insn& i = b->insns[0];
  if (code_size_ != 8 && state.rip + i.len - 1 > fetch_limit_) { fault(Vector::kGP, 0); return; }
  state.sti_blocking = state.movss_blocking = false;
  stop_block_ = false;
  const Status st = i.fn(*this, i);
  if (st == Status::kFault) {
    if (shadow) { /* the shadow did not expire: the instruction did not complete */ }
    return;
  }
  // A VM exit leaves the guest: RIP, RFLAGS and the pending debug exceptions are the exit's
  // (a fault-like exit ends the instruction before it completes, SDM Vol. 3 §28.1); nothing of
  // the guest's single-step trap may remain pending in the host's context.
  if (vmx_.exit_pending) {
    // The instruction exited before it completed, inside the shadow it ran under: the exit saves
    // that blocking in the interruptibility state (SDM Vol. 3 §28.3.1.5), which is how L0 sees a
    // VMLAUNCH right after MOV SS (VMfailValid(26), KVM's nested_vmx_run).
    if (sti_was || movss_was)
      current_vmcs().write(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO,
                           current_vmcs().read(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO) |
                               (sti_was ? arch::interruptibility::kBlockingBySti : 0) |
                               (movss_was ? arch::interruptibility::kBlockingByMovSs : 0));
    return;
  }
  if (st == Status::kNext || st == Status::kEndBlock) state.rip += i.len;
  state.rip &= ip_mask_;
  ++retired_;
  state.rflags &= ~rflags::kRF;
  if (tf && !has_pending_event_) (void)debug_exception(dr6::kBS);
}

RunExit Cpu::run_one() {
  attention_.fetch_or(attention::kStep, std::memory_order_acq_rel);
  const RunExit e = run(1);
  attention_.fetch_and(~attention::kStep, std::memory_order_acq_rel);
  return e;
}

RunExit Cpu::run(uint64_t budget) {
  const uint64_t stop_at = budget > ~0ull - retired_ ? ~0ull : retired_ + budget;
  // The block whose exit (at prev_rip, in prev_epoch) found no link: linked to the block the
  // lookup below finds, if nothing happened in between. prev_exit is the same for generated
  // code: the exit record it left through (with prev = nullptr when the block it jumped to was
  // stale, so that the record is linked again to the block decoded anew).
  const Block* prev = nullptr;
  jit::ExitRecord* prev_exit = nullptr;
  uint64_t prev_rip = 0;
  uint32_t prev_epoch = 0;
  jit_stop_at_ = stop_at;
  for (;;) {
    if (__builtin_expect(jit_ && jit_->wants_flush(), 0)) {
      // The code cache is full: start again with empty caches (between blocks, where no
      // generated code is running and no block pointer is held).
      blocks_->flush();
      tlb_.bump_epoch();
      prev = nullptr;
      prev_exit = nullptr;
    }
    if (vmx_.exit_pending) {
      vmx_.exit_pending = false;
      return RunExit::kVmExit;
    }
    if (has_pending_event_) {
      prev = nullptr;
      prev_exit = nullptr;
      if (intercept_exceptions && pending_event_.type == EventType::kHardwareException && !intercepted_) {
        intercepted_ = true;
        return RunExit::kException;
      }
      intercepted_ = false;
      if (!deliver_pending_event()) return RunExit::kShutdown;
      // The exception bitmap made the delivery a VM exit: the host state is loaded, nothing of
      // the guest's may run (or fault) after it (SDM §26.2).
      if (vmx_.exit_pending) continue;
    }
    if (attention_.load(std::memory_order_relaxed) || state.activity != Activity::kActive || vmx_timer_due()) {
      prev = nullptr;
      prev_exit = nullptr;
      RunExit e;
      if (!service_attention(e)) return e;
    }
    if (retired_ >= stop_at) return RunExit::kBudget;
    if (__builtin_expect((state.rflags & (rflags::kTF | rflags::kRF)) || state.sti_blocking || state.movss_blocking ||
                             (attention_.load(std::memory_order_relaxed) & attention::kStep), 0)) {
      prev = nullptr;
      prev_exit = nullptr;
      step_one();
      continue;
    }
    uint64_t la;
    const Block* b = find_block(la);
    if (!b) { prev = nullptr; prev_exit = nullptr; continue; }
    if (__builtin_expect(state.rip + b->bytes - 1 > fetch_limit_, 0)) {
      prev = nullptr;
      prev_exit = nullptr;
      step_one();  // the block runs past the CS limit (or wraps IP): one instruction at a time
      continue;
    }
    if (prev_rip == state.rip && prev_epoch == tlb_.epoch()) {
      if (prev && prev->linkable && b->linkable) {
        BlockLink* slot = &prev->links[0];
        if (slot->epoch == prev_epoch) slot = &prev->links[1];
        *slot = {state.rip, b, prev_epoch};
      }
      if (prev_exit && b->jit_code) jit_->link(prev_exit, *b, state.rip, prev_epoch);
    }
    prev = nullptr;
    prev_exit = nullptr;
    // Chain from block to block while nothing needs the checks above.
    for (;;) {
      Status st;
      jit::ExitRecord* exit = nullptr;
      if (jit_ && !b->jit_code && !b->jit_refused && b->heat >= jit_threshold_) jit_->compile(*b);
      if (b->jit_code) {
        // Generated code chains by itself and returns with the last block it ran.
        st = jit_->run(*b);
        if (!jit_last_) {  // it reached a stale translation: look that block up again
          prev_exit = jit_exit_;
          prev_rip = state.rip;
          prev_epoch = tlb_.epoch();
          break;
        }
        b = jit_last_;
        exit = jit_exit_;
      } else {
        st = execute_block(*b);
        if (b->heat < 0xffff) ++b->heat;
      }
      if (st != Status::kNext && st != Status::kJumped) break;
      if (attention_.load(std::memory_order_relaxed) || retired_ >= stop_at || vmx_timer_due()) break;
      const Block* next = next_linked_block(*b);
      if (!next) {
        prev = b;
        prev_exit = exit;
        prev_rip = state.rip;
        prev_epoch = tlb_.epoch();
        break;
      }
      if (exit && next->jit_code) jit_->link(exit, *next, state.rip, tlb_.epoch());
      b = next;
    }
  }
}

}  // namespace nestvm::cpu
