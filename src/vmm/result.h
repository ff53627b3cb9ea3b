// The outcome of host-side setup that can fail (parsing the command line, reading a file,
// loading an image): a value, or one message that the command line prints as
// "nestvm: <message>" before exiting with status 2 (STYLE.md, "Errors and outcomes").
#pragma once
#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace nestvm::vmm {

// A failure's message, without the "nestvm: " prefix and without a trailing newline.
struct Error {
  std::string message;
};

// The value of a Result that carries none.
struct Ok {};

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}     // NOLINT: implicit, as `return value;`
  Result(Error e) : error_(std::move(e.message)) {}  // NOLINT: implicit, as `return Error{...};`

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return error_; }

  T& value() {
    assert(ok());
    return *value_;
  }
  const T& value() const {
    assert(ok());
    return *value_;
  }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  std::string error_;
};

}  // namespace nestvm::vmm
