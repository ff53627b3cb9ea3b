#include "hv/irqchip/pc_irqchip.h"

#include <algorithm>

#include "arch/msr_index.h"
#include "cpu/cpu_model.h"
#include "hv/clock.h"
#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::hv {

using arch::ApicDeliveryMode;

namespace {
constexpr uint32_t kApicBaseMsr = arch::msr_index(arch::Msr::kIA32_APIC_BASE);
constexpr uint32_t kTscDeadlineMsr = arch::msr_index(arch::Msr::kIA32_TSC_DEADLINE);
bool is_x2apic_msr(uint32_t index) {
  return index >= arch::msr_index(arch::Msr::kIA32_X2APIC_BASE) && index <= arch::msr_index(arch::Msr::kIA32_X2APIC_END);
}
}  // namespace

PcIrqChip::PcIrqChip(Vm& vm) : vm_(vm), clock_(&host_tsc), ioapic_(*this), pic_(*this), pit_(*this) {
  for (unsigned i = 0; i < vm.vcpu_count(); ++i) lapics_.push_back(std::make_unique<Lapic>(*this, vm.vcpu(i)));
  IoBuses& io = vm.io();
  io.add_pio(0x20, 2, &pic_, "pic-master");
  io.add_pio(0xa0, 2, &pic_, "pic-slave");
  io.add_pio(0x4d0, 2, &pic_, "elcr");
  io.add_pio(0x40, 4, &pit_, "pit");
  io.add_pio(0x61, 1, &pit_, "port-b");
  io.add_mmio(arch::ioapic::kDefaultBase, 0x1000, &ioapic_, "ioapic");
  io.set_local_mmio(this);
}

PcIrqChip::~PcIrqChip() { vm_.io().set_local_mmio(nullptr); }

// ExtINT from the PIC comes before the LAPIC's own requests (KVM's kvm_cpu_get_interrupt).
bool PcIrqChip::has_interrupt(unsigned vcpu) {
  Lapic& l = *lapics_[vcpu];
  if (pic_.intr() && l.accepts_pic_interrupt()) return true;
  return l.pending_vector() >= 0;
}

int PcIrqChip::acknowledge_interrupt(unsigned vcpu) {
  Lapic& l = *lapics_[vcpu];
  if (pic_.intr() && l.accepts_pic_interrupt()) return pic_.acknowledge();
  return l.acknowledge();
}

bool PcIrqChip::has_nmi(unsigned vcpu) { return lapics_[vcpu]->nmi_pending(); }
bool PcIrqChip::take_nmi(unsigned vcpu) { return lapics_[vcpu]->take_nmi(); }

uint64_t PcIrqChip::next_deadline(unsigned vcpu) {
  const uint64_t d = lapics_[vcpu]->timer_deadline();
  return vcpu == 0 ? std::min(d, pit_.deadline()) : d;
}

void PcIrqChip::expire_timers(unsigned vcpu, uint64_t now_tsc) {
  lapics_[vcpu]->expire_timer(now_tsc);
  if (vcpu == 0) pit_.expire(now_tsc);
}

// QEMU's PC routing (kvm_pc_setup_irq_routing): IRQ0 reaches I/O APIC pin 2, IRQ2 nothing.
void PcIrqChip::set_irq(unsigned gsi, bool level) {
  if (gsi < 16) pic_.set_irq(gsi, level);
  if (gsi == 0) ioapic_.set_irq(2, level);
  else if (gsi != 2) ioapic_.set_irq(gsi, level);
}

bool PcIrqChip::msr_read(unsigned vcpu, uint32_t index, uint64_t& value) {
  Lapic& l = *lapics_[vcpu];
  if (index == kApicBaseMsr) {
    value = l.apic_base();
    return true;
  }
  if (index == kTscDeadlineMsr) {
    if (!vm_.model().has(cpu::Feature::kTscDeadline)) return false;
    value = l.tsc_deadline();
    return true;
  }
  return is_x2apic_msr(index) && l.msr_read(index, value);
}

bool PcIrqChip::msr_write(unsigned vcpu, uint32_t index, uint64_t value) {
  Lapic& l = *lapics_[vcpu];
  if (index == kApicBaseMsr) return l.set_apic_base(value);
  if (index == kTscDeadlineMsr) {
    if (!vm_.model().has(cpu::Feature::kTscDeadline)) return false;
    l.set_tsc_deadline(value);
    return true;
  }
  return is_x2apic_msr(index) && l.msr_write(index, value);
}

void PcIrqChip::reset_vcpu(unsigned vcpu, bool init) { lapics_[vcpu]->reset(init); }

// KVM's kvm_irq_delivery_to_apic. Hardware-disabled APICs are off the bus. A lowest-priority
// message goes to one software-enabled target: the (vector mod n)-th, KVM's vector hashing,
// which spreads vectors over processors without reading their priorities across threads.
unsigned PcIrqChip::deliver(const Lapic* source, const ApicIrq& irq) {
  auto eligible = [&](const Lapic& l) {
    return l.hw_enabled() && l.match_dest(source, irq) &&
           (irq.mode != ApicDeliveryMode::kLowestPriority || l.sw_enabled());
  };
  if (irq.mode != ApicDeliveryMode::kLowestPriority) {
    unsigned reached = 0;
    for (auto& l : lapics_) {
      if (!eligible(*l)) continue;
      l->accept(irq);
      ++reached;
    }
    return reached;
  }
  const unsigned n = unsigned(std::count_if(lapics_.begin(), lapics_.end(), [&](auto& l) { return eligible(*l); }));
  if (n == 0) return 0;
  unsigned pick = irq.vector % n;
  for (auto& l : lapics_) {
    if (!eligible(*l)) continue;
    if (pick-- == 0) {
      l->accept(irq);
      break;
    }
  }
  return 1;
}

void PcIrqChip::pic_intr_raised() {
  for (auto& l : lapics_)
    if (l->accepts_pic_interrupt()) kick(l->vcpu());
}

void PcIrqChip::inject_nmi() {
  for (auto& l : lapics_) {
    if (l->hw_enabled()) {
      l->local_deliver(arch::ApicReg::kLvtLint1);
    } else {
      ApicIrq nmi;
      nmi.mode = ApicDeliveryMode::kNmi;
      l->accept(nmi);
    }
  }
}

void PcIrqChip::kick(Vcpu& vcpu) {
  if (running_vcpu() != &vcpu) vcpu.kick();
}

void PcIrqChip::pit_deadline_changed() { kick(vm_.vcpu(0)); }

Lapic* PcIrqChip::running_lapic() {
  Vcpu* v = running_vcpu();
  return v && &v->vm() == &vm_ ? lapics_[v->index()].get() : nullptr;
}

bool PcIrqChip::local_mmio_read(uint64_t gpa, unsigned size, uint64_t& value) {
  Lapic* l = running_lapic();
  if (!l || !l->mmio_in_range(gpa)) return false;
  value = l->mmio_read(gpa, size);
  return true;
}

bool PcIrqChip::local_mmio_write(uint64_t gpa, unsigned size, uint64_t value) {
  Lapic* l = running_lapic();
  if (!l || !l->mmio_in_range(gpa)) return false;
  l->mmio_write(gpa, size, value);
  return true;
}

}  // namespace nestvm::hv
