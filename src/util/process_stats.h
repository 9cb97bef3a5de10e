// Memory figures of the running process for benchmarks: resident set now and at its peak, and
// the heap in use (which, unlike RSS, counts an allocation that reuses memory freed earlier).
#pragma once

namespace cqkv {

double CurrentRssBytes();  // /proc/self/statm; 0 when unavailable
double PeakRssBytes();     // getrusage ru_maxrss
double HeapInUseBytes();   // glibc mallinfo2: small blocks plus mmapped ones

}  // namespace cqkv
