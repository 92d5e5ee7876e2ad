// internal.h: shared plumbing for the bridge's translation units (never seen by Go).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "cbridge.h"

struct tb_tensor_s {
  at::Tensor t;
};

struct tb_error_s {
  int code;
  std::string msg;
};

struct tb_generator_s {
  at::Generator g;
};

namespace tb {

extern std::atomic<int64_t> live_tensors;
extern std::atomic<int> wanted_threads;
// This OS thread's own intra-op thread count (0: wanted_threads), set by
// tb_set_thread_threads for a worker that shares the cores with others.
inline thread_local int thread_threads = 0;

// Wraps a tensor in a new caller-owned handle.
inline tb_tensor wrap(at::Tensor t) {
  live_tensors.fetch_add(1, std::memory_order_relaxed);
  return new tb_tensor_s{std::move(t)};
}

tb_error make_error(int code, const char* op, const char* what);

// Thrown when a CUDA device is asked for but this build or machine has none;
// TB_CATCH reports it as TB_ERR_NO_CUDA.
struct no_cuda_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reports whether a c10::Error is libtorch's CPU allocator failing (it throws a
// plain c10::Error, not c10::OutOfMemoryError), so Go sees it as out of memory.
inline bool is_cpu_oom(const c10::Error& e) {
  const std::string& m = e.msg();
  return m.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
         m.find("DefaultCPUAllocator: not enough memory") != std::string::npos;
}

// Applies per-thread settings (intra-op thread count) before any work on this OS thread.
inline void thread_setup() {
  thread_local int applied = -1;
  int want = thread_threads > 0 ? thread_threads : wanted_threads.load(std::memory_order_relaxed);
  if (want > 0 && applied != want) {
    at::set_num_threads(want);
    applied = want;
  }
}

inline at::IntArrayRef ints(const int64_t* p, int n) { return at::IntArrayRef(p, (size_t)n); }

inline c10::optional<at::Tensor> opt(tb_tensor t) {
  if (t == nullptr) return c10::nullopt;
  return t->t;
}

inline at::Device device(int type, int index) {
  if (type == TB_CUDA) return at::Device(at::kCUDA, (c10::DeviceIndex)index);
  return at::Device(at::kCPU);
}

inline c10::optional<at::Generator> gen(tb_generator g) {
  if (g == nullptr) return c10::nullopt;
  return g->g;
}

at::TensorOptions options(int dtype, int device_type, int device_index);

void check_cuda(int device_type);

}  // namespace tb

// TB_TRY / TB_CATCH(op) wrap every fallible body: no exception escapes into Go.
#define TB_TRY \
  try {        \
    tb::thread_setup();

#define TB_CATCH(op)                                                        \
  return nullptr;                                                           \
  }                                                                         \
  catch (const c10::OutOfMemoryError& e) {                                  \
    return tb::make_error(TB_ERR_OOM, op, e.what_without_backtrace());      \
  }                                                                         \
  catch (const c10::IndexError& e) {                                        \
    return tb::make_error(TB_ERR_INDEX, op, e.what_without_backtrace());    \
  }                                                                         \
  catch (const c10::TypeError& e) {                                         \
    return tb::make_error(TB_ERR_TYPE, op, e.what_without_backtrace());     \
  }                                                                         \
  catch (const c10::ValueError& e) {                                        \
    return tb::make_error(TB_ERR_VALUE, op, e.what_without_backtrace());    \
  }                                                                         \
  catch (const c10::NotImplementedError& e) {                               \
    return tb::make_error(TB_ERR_NOT_IMPLEMENTED, op, e.what_without_backtrace()); \
  }                                                                         \
  catch (const c10::Error& e) {                                             \
    return tb::make_error(tb::is_cpu_oom(e) ? TB_ERR_OOM : TB_ERR_OTHER, op, \
                          e.what_without_backtrace());                      \
  }                                                                         \
  catch (const std::bad_alloc& e) {                                         \
    return tb::make_error(TB_ERR_OOM, op, "out of memory (std::bad_alloc)"); \
  }                                                                         \
  catch (const tb::no_cuda_error& e) {                                      \
    return tb::make_error(TB_ERR_NO_CUDA, op, e.what());                    \
  }                                                                         \
  catch (const std::exception& e) {                                         \
    return tb::make_error(TB_ERR_OTHER, op, e.what());                      \
  }                                                                         \
  catch (...) {                                                             \
    return tb::make_error(TB_ERR_OTHER, op, "unknown C++ exception");       \
  }

// TB_OUT stores a tensor result into the out-parameter.
#define TB_OUT(expr) *out = tb::wrap(expr)
