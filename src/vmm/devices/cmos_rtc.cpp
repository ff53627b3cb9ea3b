#include "vmm/devices/cmos_rtc.h"

#include <algorithm>
#include <chrono>

#include "hv/vm.h"

namespace nestvm::vmm {

using namespace rtc;

namespace {
constexpr int64_t kNsPerSec = 1000000000;
// The data sheet's update cycle: UIP rises 244 us before the registers change.
constexpr int64_t kUipHoldNs = 8 * kNsPerSec / 32768;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = floor_div(y, 400);
  const auto yoe = unsigned(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + int64_t(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month, day, hour, minute, second, weekday;  // weekday 0 = Sunday
};

Civil civil_from_seconds(int64_t t) {
  const int64_t days = floor_div(t, 86400);
  const int64_t sod = t - days * 86400;
  const int64_t z = days + 719468;
  const int64_t era = floor_div(z, 146097);
  const auto doe = unsigned(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  Civil c;
  c.day = doy - (153 * mp + 2) / 5 + 1;
  c.month = mp < 10 ? mp + 3 : mp - 9;
  c.year = int64_t(yoe) + era * 400 + (c.month <= 2);
  c.hour = unsigned(sod / 3600);
  c.minute = unsigned(sod / 60 % 60);
  c.second = unsigned(sod % 60);
  c.weekday = unsigned(floor_mod(days + 4, 7));  // 1970-01-01 was a Thursday
  return c;
}

bool is_time_register(uint8_t i) {
  return i == kSeconds || i == kMinutes || i == kHours || (i >= kDayOfWeek && i <= kYear) || i == kCentury;
}
}  // namespace

CmosRtc::CmosRtc(hv::Vm& vm) : vm_(vm) {
  time_source_ = [] {
    return int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count());
  };
  // Power-on values as QEMU's rtc_realizefn/rtc_reset: 32.768 kHz divider, 1024 Hz rate, BCD,
  // 24-hour, valid RAM.
  cmos_[kRegA] = 0x26;
  cmos_[kRegB] = reg_b::k24H;
  cmos_[kRegD] = reg_d::kVRT;
  last_event_ns_ = guest_ns();
  encode_time();
  uint64_t below = 0, above = 0;
  if (!vm.mem().slots().empty()) {
    for (const auto& s : vm.mem().slots()) {
      const uint64_t end = s->gpa + s->size, split = 1ull << 32;
      below += s->gpa < split ? std::min(end, split) - s->gpa : 0;
      above += end > split ? end - std::max(s->gpa, split) : 0;
    }
  } else {
    // hw/i386/pc_piix.c: with 3.5 GiB or more, 3 GiB stay low.
    const uint64_t ram = vm.config().ram_bytes;
    below = std::min<uint64_t>(ram, ram >= 0xe0000000ull ? 0xc0000000ull : 0xe0000000ull);
    above = ram - below;
  }
  set_memory_layout(below, above);
  // pc_cmos_init: the FPU is there (the equipment byte), and the number of CPUs less one.
  cmos_[0x14] = 0x02;
  cmos_[0x5f] = uint8_t(vm.vcpu_count() - 1);
  vm.io().add_pio(kIndexPort, 2, this, "rtc");
  timer_ = std::thread([this] { timer_loop(); });
}

CmosRtc::~CmosRtc() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  timer_.join();
}

void CmosRtc::set_memory_layout(uint64_t below_4g, uint64_t above_4g) {
  std::lock_guard lock(mu_);
  constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;
  // Base memory (the first MiB), in KiB.
  uint64_t v = std::min<uint64_t>(below_4g / kKiB, 640);
  cmos_[0x15] = uint8_t(v);
  cmos_[0x16] = uint8_t(v >> 8);
  // Extended memory above 1 MiB, in KiB, at most 65535.
  v = std::min<uint64_t>(below_4g > kMiB ? (below_4g - kMiB) / kKiB : 0, 65535);
  cmos_[0x17] = cmos_[0x30] = uint8_t(v);
  cmos_[0x18] = cmos_[0x31] = uint8_t(v >> 8);
  // Memory between 16 MiB and 4 GiB, in 64 KiB units.
  v = std::min<uint64_t>(below_4g > 16 * kMiB ? (below_4g - 16 * kMiB) / (64 * kKiB) : 0, 65535);
  cmos_[0x34] = uint8_t(v);
  cmos_[0x35] = uint8_t(v >> 8);
  // Memory above 4 GiB, in 64 KiB units.
  v = above_4g / (64 * kKiB);
  cmos_[0x5b] = uint8_t(v);
  cmos_[0x5c] = uint8_t(v >> 8);
  cmos_[0x5d] = uint8_t(v >> 16);
}

void CmosRtc::set_nvram(uint8_t index, uint8_t value) {
  std::lock_guard lock(mu_);
  cmos_[index & 0x7f] = value;
}

uint8_t CmosRtc::nvram(uint8_t index) {
  std::lock_guard lock(mu_);
  return cmos_[index & 0x7f];
}

bool CmosRtc::nmi_masked() {
  std::lock_guard lock(mu_);
  return nmi_masked_;
}

void CmosRtc::set_time_source(TimeSource source) {
  std::lock_guard lock(mu_);
  time_source_ = std::move(source);
  offset_ns_ = 0;
  last_event_ns_ = guest_ns();
  if (running()) encode_time();
  cv_.notify_all();
}

int64_t CmosRtc::host_ns() const { return time_source_(); }
int64_t CmosRtc::guest_ns() const { return host_ns() + offset_ns_; }

// rtc_running: neither stopped for setting nor with the divider in reset or off-frequency.
bool CmosRtc::running() const {
  return !(cmos_[kRegB] & reg_b::kSET) && (cmos_[kRegA] & reg_a::kDV) <= 0x20;
}

uint8_t CmosRtc::to_reg(unsigned v) const {
  return (cmos_[kRegB] & reg_b::kDM) ? uint8_t(v) : uint8_t(((v / 10) << 4) | (v % 10));
}

unsigned CmosRtc::from_reg(uint8_t r) const {
  return (cmos_[kRegB] & reg_b::kDM) ? r : unsigned((r >> 4) * 10 + (r & 0x0f));
}

void CmosRtc::encode_time() {
  const Civil c = civil_from_seconds(floor_div(guest_ns(), kNsPerSec));
  cmos_[kSeconds] = to_reg(c.second);
  cmos_[kMinutes] = to_reg(c.minute);
  if (cmos_[kRegB] & reg_b::k24H) {
    cmos_[kHours] = to_reg(c.hour);
  } else {
    // 12-hour mode: 12, 1, ..., 11 with bit 7 for PM.
    const unsigned h12 = c.hour % 12 ? c.hour % 12 : 12;
    cmos_[kHours] = uint8_t(to_reg(h12) | (c.hour >= 12 ? 0x80 : 0));
  }
  cmos_[kDayOfWeek] = to_reg(c.weekday + 1);
  cmos_[kDayOfMonth] = to_reg(c.day);
  cmos_[kMonth] = to_reg(c.month);
  cmos_[kYear] = to_reg(unsigned(floor_mod(c.year, 100)));
  cmos_[kCentury] = to_reg(unsigned(floor_div(c.year, 100)));
}

// rtc_set_time: the registers' date and time, plus `fraction_ns` into the current second,
// become the clock's time from now on (out-of-range fields carry over, as mktimegm does).
void CmosRtc::decode_time(int64_t fraction_ns) {
  unsigned hour;
  if (cmos_[kRegB] & reg_b::k24H) {
    hour = from_reg(cmos_[kHours]);
  } else {
    hour = from_reg(cmos_[kHours] & 0x7f) % 12 + ((cmos_[kHours] & 0x80) ? 12 : 0);
  }
  int64_t year = int64_t(from_reg(cmos_[kCentury])) * 100 + from_reg(cmos_[kYear]);
  int64_t month0 = int64_t(from_reg(cmos_[kMonth])) - 1;
  year += floor_div(month0, 12);
  month0 = floor_mod(month0, 12);
  const int64_t days = days_from_civil(year, unsigned(month0 + 1), 1) + int64_t(from_reg(cmos_[kDayOfMonth])) - 1;
  const int64_t secs = days * 86400 + int64_t(hour) * 3600 + int64_t(from_reg(cmos_[kMinutes])) * 60 +
                       from_reg(cmos_[kSeconds]);
  const int64_t now_guest = secs * kNsPerSec + fraction_ns;
  offset_ns_ = now_guest - host_ns();
  last_event_ns_ = now_guest;
}

uint32_t CmosRtc::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  for (unsigned i = 0; i < size; ++i) {
    const unsigned p = port + i;
    // The index register is write-only (QEMU reads it as 0xff).
    const uint8_t b = p == kDataPort ? read_data() : 0xff;
    v |= uint32_t(b) << (8 * i);
  }
  return v;
}

void CmosRtc::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  for (unsigned i = 0; i < size; ++i) {
    const unsigned p = port + i;
    const auto b = uint8_t(value >> (8 * i));
    if (p == kIndexPort) {
      index_ = b & 0x7f;
      nmi_masked_ = b & 0x80;  // the PC's NMI mask shares the index port
    } else if (p == kDataPort) {
      write_data(b);
    }
  }
}

uint8_t CmosRtc::read_data() {
  uint8_t i = index_ == kIbmPs2Century ? kCentury : index_;
  if (is_time_register(i)) {
    if (running()) encode_time();
    return cmos_[i];
  }
  switch (i) {
    case kRegA: {
      uint8_t v = cmos_[kRegA] & uint8_t(~reg_a::kUIP);
      if (running() && floor_mod(guest_ns(), kNsPerSec) >= kNsPerSec - kUipHoldNs) v |= reg_a::kUIP;
      return v;
    }
    case kRegC: {
      if (running()) advance(guest_ns());
      const uint8_t v = cmos_[kRegC];
      cmos_[kRegC] = 0;  // reading C acknowledges every flag and lowers IRQ 8
      update_irq_line();
      return v;
    }
    default:
      return cmos_[i];
  }
}

void CmosRtc::write_data(uint8_t v) {
  uint8_t i = index_ == kIbmPs2Century ? kCentury : index_;
  if (is_time_register(i)) {
    if (running()) {
      // Writing one field while the clock runs sets the clock from all of them at once.
      encode_time();
      const int64_t fraction = floor_mod(guest_ns(), kNsPerSec);
      cmos_[i] = v;
      decode_time(fraction);
    } else {
      cmos_[i] = v;
    }
    cv_.notify_all();
    return;
  }
  switch (i) {
    case kRegA:
      write_reg_a(v);
      return;
    case kRegB:
      write_reg_b(v);
      return;
    case kRegC:
    case kRegD:
      return;  // read-only
    default:
      cmos_[i] = v;
      if (i == kSecondsAlarm || i == kMinutesAlarm || i == kHoursAlarm) cv_.notify_all();
      return;
  }
}

void CmosRtc::write_reg_a(uint8_t v) {
  const bool was = running();
  if (was) {
    advance(guest_ns());
    encode_time();  // the registers keep the time if the divider stops
  }
  const uint8_t old = cmos_[kRegA];
  cmos_[kRegA] = v & uint8_t(~reg_a::kUIP);  // UIP is read-only
  if (!was && running()) {
    // Data sheet: when the divider leaves reset, the first update comes half a second later.
    decode_time((old & 0x60) == 0x60 ? kNsPerSec / 2 : 0);
  }
  cv_.notify_all();
}

void CmosRtc::write_reg_b(uint8_t v) {
  const bool was = running();
  if (was) {
    advance(guest_ns());
    encode_time();  // SET freezes the registers at the current time
  }
  // SET clears UIE (data sheet: no update-ended interrupts while the clock is being set).
  if (v & reg_b::kSET) v &= uint8_t(~reg_b::kUIE);
  cmos_[kRegB] = v;
  if (!was && running()) {
    // Leaving SET: the clock restarts from the registers, keeping its phase within the second.
    decode_time(floor_mod(guest_ns(), kNsPerSec));
  }
  // A flag already set when its interrupt becomes enabled interrupts at once.
  if (cmos_[kRegB] & cmos_[kRegC] & (reg_c::kPF | reg_c::kAF | reg_c::kUF)) cmos_[kRegC] |= reg_c::kIRQF;
  else cmos_[kRegC] &= uint8_t(~reg_c::kIRQF);
  update_irq_line();
  cv_.notify_all();
}

bool CmosRtc::alarm_matches(int64_t second) const {
  const Civil c = civil_from_seconds(second);
  // An alarm byte with its top two bits set matches every value ("don't care").
  const auto match = [&](uint8_t alarm, unsigned value, bool hours) {
    if ((alarm & 0xc0) == 0xc0) return true;
    if (!hours || (cmos_[kRegB] & reg_b::k24H)) return from_reg(alarm) == value;
    return from_reg(alarm & 0x7f) % 12 + ((alarm & 0x80) ? 12 : 0) == value;
  };
  return match(cmos_[kSecondsAlarm], c.second, false) && match(cmos_[kMinutesAlarm], c.minute, false) &&
         match(cmos_[kHoursAlarm], c.hour, true);
}

// Sets the C flags of the updates, alarms and periodic ticks in (last_event_ns_, now]: flags
// are set whether or not their interrupt is enabled; IRQF and IRQ 8 follow the enables.
void CmosRtc::advance(int64_t now) {
  if (now <= last_event_ns_) return;
  uint8_t flags = 0;
  const int64_t s0 = floor_div(last_event_ns_, kNsPerSec), s1 = floor_div(now, kNsPerSec);
  if (s1 > s0) {
    flags |= reg_c::kUF;
    for (int64_t s = std::max(s0 + 1, s1 - 86399); s <= s1; ++s) {
      if (alarm_matches(s)) {
        flags |= reg_c::kAF;
        break;
      }
    }
  }
  unsigned rate = cmos_[kRegA] & reg_a::kRS;
  if (rate) {
    if (rate <= 2) rate += 7;  // rates 1 and 2 repeat rates 8 and 9 (data sheet Table 3)
    const int64_t period = (kNsPerSec << (rate - 1)) / 32768;
    if (floor_div(now, period) > floor_div(last_event_ns_, period)) flags |= reg_c::kPF;
  }
  last_event_ns_ = now;
  cmos_[kRegC] |= flags;
  if (cmos_[kRegC] & cmos_[kRegB] & (reg_c::kPF | reg_c::kAF | reg_c::kUF)) cmos_[kRegC] |= reg_c::kIRQF;
  update_irq_line();
}

void CmosRtc::update_irq_line() {
  const bool level = cmos_[kRegC] & reg_c::kIRQF;
  if (level == irq_level_) return;
  irq_level_ = level;
  if (hv::IrqChip* chip = vm_.irqchip()) chip->set_irq(kIrq, level);
}

// The first guest time after the last advance() at which an enabled interrupt source has an
// event; -1 if none. (Counting from the last advance, not from now: a wake-up that lands on the
// boundary must still see the event as due.)
int64_t CmosRtc::next_event_ns() const {
  if (!running()) return -1;
  const uint8_t b = cmos_[kRegB];
  const int64_t g = last_event_ns_;
  int64_t next = -1;
  if (b & (reg_b::kUIE | reg_b::kAIE)) next = (floor_div(g, kNsPerSec) + 1) * kNsPerSec;
  unsigned rate = cmos_[kRegA] & reg_a::kRS;
  if ((b & reg_b::kPIE) && rate) {
    if (rate <= 2) rate += 7;
    const int64_t period = (kNsPerSec << (rate - 1)) / 32768;
    const int64_t p = (floor_div(g, period) + 1) * period;
    next = next < 0 ? p : std::min(next, p);
  }
  return next;
}

void CmosRtc::timer_loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const int64_t next = next_event_ns();
    if (next < 0) {
      cv_.wait(lock);
      continue;
    }
    const int64_t now = guest_ns();
    if (now >= next) {
      advance(now);
      continue;
    }
    cv_.wait_for(lock, std::chrono::nanoseconds(next - now));
  }
}

}  // namespace nestvm::vmm
