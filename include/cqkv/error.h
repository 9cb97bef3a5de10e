// The one exception type cqkv throws to its users. Messages name the file, tensor, field or
// request at fault; `code()` classifies the failure so servers can map it to a status.
#pragma once

#include <stdexcept>
#include <string>

namespace cqkv {

enum class ErrorCode {
  kInvalidArgument,    // a bad file, spec, request field or value: the caller's to fix
  kResourceExhausted,  // the request queue or the KV memory budget is full: retry later
  kNotFound,           // an unknown request id, model or file
  kUnavailable,        // the engine is shutting down
  kInternal,           // a broken invariant inside cqkv
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg, ErrorCode code = ErrorCode::kInvalidArgument)
      : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace cqkv
