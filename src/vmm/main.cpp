// nestvm: the program. Until the machine (issue "first light") exists, it runs the built-in
// core workload and reports the core's speed.
#include <fmt/core.h>

int main(int argc, char** argv) {
  fmt::print("nestvm: x86-64 virtual machine with nested virtualization (in development)\n");
  return 0;
}
