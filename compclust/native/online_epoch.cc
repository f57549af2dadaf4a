// One epoch of the online SOM / competitive layer on the CPU, for XLA's FFI: the same rule as
// compclust.algorithms.online.step for the Euclidean activation, the hard winner and a grid
// kernel, written as a plain loop over the samples. Each step makes one pass over the weights:
// it moves every unit and, in the same pass, measures the moved unit's distance to the next
// sample, which the next step's winner search needs (the XLA scan makes two passes).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kSigmaFloor = 1e-6f;  // compclust.kernels.SIGMA_FLOOR

// exp(x) for x <= 0 as 2^n 2^f: a degree-6 polynomial for 2^f, f in [-0.5, 0.5] (relative error
// ~2e-7, as XLA's own float32 exp), in plain arithmetic so the compiler vectorises the loop over
// units (libm's expf is a call per unit, which cost more than the rest of a digits step).
inline float FastExp(float x) {
  x = x > -87.0f ? x : -87.0f;
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest: 1.5 * 2^23 drops the fraction
  const float f = t - n;
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, sizeof(bits));
  bits += static_cast<int32_t>(n) * (1 << 23);  // n is negative: a product, not a shift
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// step[k] = rate * h(sq_dist[k], sigma) for compclust.kernels, by the ids of
// compclust.native.KERNEL_IDS (the switch outside the loops, so each loop vectorises).
void StepSizes(int64_t kernel, const float* __restrict sq_dist, float sigma, float rate, int64_t n,
               float* __restrict step) {
  const float s2 = sigma * sigma, inv_two_s2 = 1.0f / (2.0f * s2);
  switch (kernel) {
    case 0:  // gaussian
      for (int64_t k = 0; k < n; ++k) step[k] = rate * FastExp(-sq_dist[k] * inv_two_s2);
      break;
    case 1:  // bubble
      for (int64_t k = 0; k < n; ++k) step[k] = (sq_dist[k] < s2 || sq_dist[k] == 0.0f) ? rate : 0.0f;
      break;
    case 2:  // triangle
      for (int64_t k = 0; k < n; ++k) step[k] = rate * std::fmax(0.0f, 1.0f - std::sqrt(sq_dist[k]) / sigma);
      break;
    case 3:  // mexican hat
      for (int64_t k = 0; k < n; ++k)
        step[k] = rate * ((1.0f - sq_dist[k] / s2) * FastExp(-sq_dist[k] * inv_two_s2));
      break;
    case 4:  // cut gaussian
      for (int64_t k = 0; k < n; ++k)
        step[k] = (sq_dist[k] < s2 || sq_dist[k] == 0.0f) ? rate * FastExp(-sq_dist[k] * inv_two_s2) : 0.0f;
      break;
    default:  // delta
      for (int64_t k = 0; k < n; ++k) step[k] = sq_dist[k] == 0.0f ? rate : 0.0f;
  }
}

constexpr int64_t kLanes = 16;  // units per block: one AVX-512 register of floats (two AVX2 ones)
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));  // GCC/Clang vectors

inline int64_t RoundUpToLanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

inline Lanes Load(const float* from) {
  Lanes out;
  std::memcpy(&out, from, sizeof(out));
  return out;
}

inline void Store(float* to, Lanes value) { std::memcpy(to, &value, sizeof(value)); }

// One step's pass over G consecutive blocks of kLanes units of the weights [D, Kp]: each unit moves
// by step[k] (x - w_k) and, in the same pass, its squared distance to x_next is summed over d in
// order. G independent sums keep the multiply-add unit busy (one sum alone waits on its own
// latency every feature); each unit's sum is the same whatever G.
template <int G>
void MoveAndMeasureBlocks(float* __restrict w, const float* __restrict x, const float* __restrict x_next,
                          const float* __restrict step, float* __restrict next, int64_t n_features,
                          int64_t padded, int64_t first_block) {
  Lanes a[G], sum[G];
  for (int g = 0; g < G; ++g) {
    a[g] = Load(step + first_block + g * kLanes);
    sum[g] = Lanes{};
  }
  for (int64_t d = 0; d < n_features; ++d) {
    float* row = w + d * padded + first_block;
    const float xd = x[d], nd = x_next[d];
    for (int g = 0; g < G; ++g) {
      Lanes u = Load(row + g * kLanes);
      u = u + a[g] * (xd - u);
      Store(row + g * kLanes, u);
      const Lanes diff = u - nd;
      sum[g] += diff * diff;
    }
  }
  for (int g = 0; g < G; ++g) Store(next + first_block + g * kLanes, sum[g]);
}

// One step's pass over the weights, held as [D, Kp] (Kp: K rounded up to kLanes; the padding units
// never move): unit k moves by step[k] (x - w_k) and its squared distance to x_next is summed
// (x_next null: no distances), four blocks of kLanes units at a time.
void MoveAndMeasure(float* __restrict w, const float* __restrict x, const float* __restrict x_next,
                    const float* __restrict step, float* __restrict next, int64_t n_features, int64_t padded) {
  if (x_next == nullptr) {
    for (int64_t block = 0; block < padded; block += kLanes) {
      const Lanes a = Load(step + block);
      for (int64_t d = 0; d < n_features; ++d) {
        float* unit = w + d * padded + block;
        const Lanes u = Load(unit);
        Store(unit, u + a * (x[d] - u));
      }
    }
    return;
  }
  int64_t block = 0;
  for (; block + 4 * kLanes <= padded; block += 4 * kLanes) {
    MoveAndMeasureBlocks<4>(w, x, x_next, step, next, n_features, padded, block);
  }
  switch ((padded - block) / kLanes) {
    case 3: MoveAndMeasureBlocks<3>(w, x, x_next, step, next, n_features, padded, block); break;
    case 2: MoveAndMeasureBlocks<2>(w, x, x_next, step, next, n_features, padded, block); break;
    case 1: MoveAndMeasureBlocks<1>(w, x, x_next, step, next, n_features, padded, block); break;
    default: break;
  }
}

// A slice of the units with its own weights [D, P] (P: its units rounded up to kLanes; the padding
// units never move), so each thread's slice stays in its own core's cache.
struct Slice {
  int64_t first = 0, count = 0, padded = 0;
  std::vector<float> w;  // [D, P]: the units along the vector lanes
  std::vector<float> step, next;
  float Weight(int64_t d, int64_t unit) const { return w[d * padded + unit - first]; }
};

// The nearest unit (the first, on a tie) by the float32 distances ``dist [K]``, summed one feature
// after another; where the runner-up is within that sum's rounding (D eps of it) of the best, the
// contenders' distances are summed again in double precision, so a near tie goes as exact
// arithmetic (and MiniSom's float64) would decide it. ``sync`` is called before and after reading
// the weights (the threads must not move them meanwhile); every thread takes the same branch.
//
// The lowest distance is found kLanes at a time and then its first index, and the contenders are
// counted the same way: a scalar scan that keeps the best so far waits on a mispredicted branch
// each time the best changes, which was half of a digits step (0.48 -> 0.23 us without it).
template <typename Sync>
int64_t Nearest(const float* dist, const std::vector<Slice>& slices, const float* x, int64_t n_features,
                int64_t n_units, Sync sync) {
  const int64_t whole = n_units / kLanes * kLanes;
  Lanes lowest_lanes = Lanes{} + INFINITY;
  for (int64_t k = 0; k < whole; k += kLanes) {
    const Lanes d = Load(dist + k);
    lowest_lanes = d < lowest_lanes ? d : lowest_lanes;  // NaN never lowers it, as in a strict scan
  }
  float lowest = INFINITY;
  for (int64_t l = 0; l < kLanes; ++l) lowest = lowest_lanes[l] < lowest ? lowest_lanes[l] : lowest;
  for (int64_t k = whole; k < n_units; ++k) lowest = dist[k] < lowest ? dist[k] : lowest;
  int64_t best = 0;
  while (best < n_units && !(dist[best] == lowest)) ++best;
  if (best == n_units || std::isnan(dist[0])) {  // no finite distance, or a NaN first: the plain scan's answer
    best = 0;
    for (int64_t k = 1; k < n_units; ++k) {
      if (dist[k] < dist[best]) best = k;
    }
  }
  const float margin = 2.0f * static_cast<float>(n_features + 16) * 1.1920929e-7f * dist[best];
  Lanes close{};  // per lane: how many units are within the margin of the best (the best itself among them)
  for (int64_t k = 0; k < whole; k += kLanes) close += Load(dist + k) - dist[best] <= margin ? Lanes{} + 1.0f : Lanes{};
  float contenders = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) contenders += close[l];
  for (int64_t k = whole; k < n_units; ++k) contenders += dist[k] - dist[best] <= margin ? 1.0f : 0.0f;
  const float itself = dist[best] - dist[best] <= margin ? 1.0f : 0.0f;  // 0 where dist[best] is inf
  const bool near_tie = contenders - itself > 0.0f;
  if (!near_tie) return best;
  sync();
  double best_exact = 0.0;
  int64_t chosen = -1;
  for (const Slice& slice : slices) {
    for (int64_t k = slice.first; k < slice.first + slice.count; ++k) {
      if (dist[k] - dist[best] > margin) continue;
      double sum = 0.0;
      for (int64_t d = 0; d < n_features; ++d) {
        const double diff = static_cast<double>(slice.Weight(d, k)) - static_cast<double>(x[d]);
        sum += diff * diff;
      }
      if (chosen < 0 || sum < best_exact) {
        chosen = k;
        best_exact = sum;
      }
    }
  }
  sync();
  return chosen;
}

// A reusable barrier for a few threads: spins briefly, then yields (never stalls an oversubscribed core).
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}
  void Wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == parties_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spin = 0; generation_.load(std::memory_order_acquire) == generation; ++spin) {
      if (spin > 2000) std::this_thread::yield();
    }
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// What both epochs require of their inputs: weights [K, D], data [N, D] and an order of rows of data.
ffi::Error CheckInputs(const char* name, const ffi::Buffer<ffi::F32>& weights, const ffi::Buffer<ffi::F32>& data,
                       const ffi::Buffer<ffi::S32>& order) {
  const auto wdims = weights.dimensions();
  const auto xdims = data.dimensions();
  if (wdims.size() != 2 || xdims.size() != 2 || xdims[1] != wdims[1]) {
    return ffi::Error::InvalidArgument(std::string(name) + ": weights must be [K, D] and data [N, D]");
  }
  const int32_t* idx = order.typed_data();
  for (int64_t s = 0; s < order.element_count(); ++s) {
    if (idx[s] < 0 || idx[s] >= xdims[0]) return ffi::Error::InvalidArgument(std::string(name) + ": order out of range");
  }
  return ffi::Error::Success();
}

ffi::Error OnlineEpoch(ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> data, ffi::Buffer<ffi::S32> order,
                       ffi::Buffer<ffi::F32> lr, ffi::Buffer<ffi::F32> sigma, ffi::Buffer<ffi::F32> grid_sq,
                       int64_t kernel, int64_t threads, ffi::ResultBuffer<ffi::F32> out_weights,
                       ffi::ResultBuffer<ffi::S32> winners, ffi::ResultBuffer<ffi::F32> distances) {
  if (ffi::Error error = CheckInputs("online_epoch", weights, data, order); error.failure()) return error;
  const int64_t n_units = weights.dimensions()[0], n_features = weights.dimensions()[1];
  const int64_t n_steps = order.element_count();
  const float* x_all = data.typed_data();
  const int32_t* idx = order.typed_data();
  // The units split into slices, one per thread (threads > 1 for maps larger than a core's cache;
  // a slice is a multiple of kLanes units, so no two threads share a cache line).
  const int64_t n_threads = std::max<int64_t>(1, std::min<int64_t>(threads, RoundUpToLanes(n_units) / kLanes));
  const int64_t per_thread = (n_units + n_threads - 1) / n_threads;
  const int64_t slice_units = RoundUpToLanes(per_thread);
  std::vector<Slice> slices;
  for (int64_t first = 0; first < n_units; first += slice_units) {
    Slice slice;
    slice.first = first;
    slice.count = std::min(slice_units, n_units - first);
    slice.padded = RoundUpToLanes(slice.count);
    slices.push_back(std::move(slice));
  }
  std::vector<float> dist[2] = {std::vector<float>(n_units, 0.0f), std::vector<float>(n_units, 0.0f)};
  const float* given = weights.typed_data();
  int32_t* winner_out = winners->typed_data();
  float* distance_out = distances->typed_data();
  Barrier barrier(static_cast<int>(slices.size()));

  auto run = [&](Slice& slice, bool reports) {
    slice.w.assign(n_features * slice.padded, 0.0f);
    slice.step.assign(slice.padded, 0.0f);
    slice.next.assign(slice.padded, 0.0f);
    for (int64_t k = 0; k < slice.count; ++k) {
      for (int64_t d = 0; d < n_features; ++d) slice.w[d * slice.padded + k] = given[(slice.first + k) * n_features + d];
    }
    auto publish = [&](std::vector<float>& to) {
      std::copy(slice.next.begin(), slice.next.begin() + slice.count, to.begin() + slice.first);
    };
    if (n_steps > 0) {  // distances to the first sample: a pass that moves nothing
      const float* x = x_all + static_cast<int64_t>(idx[0]) * n_features;
      MoveAndMeasure(slice.w.data(), x, x, slice.step.data(), slice.next.data(), n_features, slice.padded);
      publish(dist[0]);
    }
    barrier.Wait();
    for (int64_t s = 0; s < n_steps; ++s) {
      const float* x = x_all + static_cast<int64_t>(idx[s]) * n_features;
      const std::vector<float>& now = dist[s % 2];
      const int64_t best = Nearest(now.data(), slices, x, n_features, n_units, [&] { barrier.Wait(); });
      if (reports) {
        winner_out[s] = static_cast<int32_t>(best);
        distance_out[s] = std::sqrt(std::fmax(now[best], 0.0f));
      }
      const float sig = std::fmax(sigma.typed_data()[s], kSigmaFloor);
      StepSizes(kernel, grid_sq.typed_data() + best * n_units + slice.first, sig, lr.typed_data()[s], slice.count,
                slice.step.data());
      const float* x_next = s + 1 < n_steps ? x_all + static_cast<int64_t>(idx[s + 1]) * n_features : nullptr;
      MoveAndMeasure(slice.w.data(), x, x_next, slice.step.data(), slice.next.data(), n_features, slice.padded);
      if (x_next != nullptr) publish(dist[(s + 1) % 2]);
      barrier.Wait();  // every slice's distances are in before the next step reads them
    }
    float* out = out_weights->typed_data();
    for (int64_t k = 0; k < slice.count; ++k) {
      for (int64_t d = 0; d < n_features; ++d) out[(slice.first + k) * n_features + d] = slice.w[d * slice.padded + k];
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < slices.size(); ++t) helpers.emplace_back(run, std::ref(slices[t]), false);
  run(slices[0], true);
  for (std::thread& helper : helpers) helper.join();
  return ffi::Error::Success();
}

// neurolab's train_cwta (compclust's "conscience" winner with the delta kernel): the winner
// minimises conscience_k * |x - w_k|, its conscience grows by one, and it alone moves by
// lr * |x - w_win| * (x - w_win). A few units and features: a plain loop, latency-bound.
//
// Written for the latency of one step, since the next step waits on the winner's move (measured
// on neurolab's 5 units x 3 features: 21 -> 12 ns a step):
// - the search ranks the squares conscience_k^2 |x - w_k|^2, so no square root stands between the
//   distances and the branch that picks the winner (mispredicted about once a step: the winners
//   are as random as the data);
// - the winner and the lowest score are set only on the taken branch, so the next comparison
//   runs on the predicted values instead of waiting for a min() chain;
// - the features are a compile-time count up to 8 (the unit's loop unrolled; a loop over a few
//   features at run time cost more than the step itself).
// Squaring changes the rounding, not the order, except within a few ulps: where another unit's
// square is within kTieBand of the lowest (flagged along the scan, conservatively) or the lowest
// is not finite, the winner is decided again by conscience_k * |x - w_k| in float32, as the XLA
// scan does, so the winners are the same bit for bit.
constexpr float kTieBand = 1.0f + 32.0f * 5.9604645e-8f;  // 32 units in the last place (14 suffice)

template <int64_t kFeatures>  // 0: the count is read at run time
void ConscienceSteps(const float* data, const int32_t* idx, const float* lr, int64_t n_steps, int64_t n_units,
                     int64_t n_features_any, float* __restrict w, float* __restrict c, float* __restrict sq_dist,
                     int32_t* __restrict winners, float* __restrict distances) {
  const int64_t n_features = kFeatures > 0 ? kFeatures : n_features_any;
  for (int64_t s = 0; s < n_steps; ++s) {
    const float* x = data + static_cast<int64_t>(idx[s]) * n_features;
    int64_t best = 0;
    float lowest = INFINITY;
    bool near_tie = false;
    for (int64_t k = 0; k < n_units; ++k) {
      float sum = 0.0f;
      for (int64_t d = 0; d < n_features; ++d) {
        const float diff = w[k * n_features + d] - x[d];
        sum += diff * diff;
      }
      sq_dist[k] = sum;
      const float score = c[k] * c[k] * sum;
      if (score < lowest) {  // the first lowest, as argmin
        near_tie |= lowest <= score * kTieBand;
        best = k;
        lowest = score;
      } else {
        near_tie |= score <= lowest * kTieBand;
      }
    }
    if (near_tie || !(lowest < INFINITY)) {  // rare: rank by the XLA scan's own float32 scores
      float best_score = 0.0f;
      for (int64_t k = 0; k < n_units; ++k) {
        const float score = c[k] * std::sqrt(sq_dist[k]);
        if (k == 0 || score < best_score) {
          best = k;
          best_score = score;
        }
      }
    }
    const float distance = std::sqrt(sq_dist[best]);
    c[best] += 1.0f;
    const float gain = lr[s] * distance;
    float* unit = w + best * n_features;
    for (int64_t d = 0; d < n_features; ++d) unit[d] += gain * (x[d] - unit[d]);
    winners[s] = static_cast<int32_t>(best);
    distances[s] = distance;
  }
}

ffi::Error ConscienceEpoch(ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> data, ffi::Buffer<ffi::S32> order,
                           ffi::Buffer<ffi::F32> lr, ffi::Buffer<ffi::F32> conscience,
                           ffi::ResultBuffer<ffi::F32> out_weights, ffi::ResultBuffer<ffi::F32> out_conscience,
                           ffi::ResultBuffer<ffi::S32> winners, ffi::ResultBuffer<ffi::F32> distances) {
  if (ffi::Error error = CheckInputs("conscience_epoch", weights, data, order); error.failure()) return error;
  const int64_t n_units = weights.dimensions()[0], n_features = weights.dimensions()[1];
  float* w = out_weights->typed_data();
  std::memcpy(w, weights.typed_data(), sizeof(float) * n_units * n_features);
  float* c = out_conscience->typed_data();
  std::memcpy(c, conscience.typed_data(), sizeof(float) * n_units);
  std::vector<float> sq_dist(n_units);
  auto run = [&](auto steps) {
    steps(data.typed_data(), order.typed_data(), lr.typed_data(), order.element_count(), n_units, n_features, w, c,
          sq_dist.data(), winners->typed_data(), distances->typed_data());
  };
  switch (n_features) {
    case 1: run(ConscienceSteps<1>); break;
    case 2: run(ConscienceSteps<2>); break;
    case 3: run(ConscienceSteps<3>); break;
    case 4: run(ConscienceSteps<4>); break;
    case 5: run(ConscienceSteps<5>); break;
    case 6: run(ConscienceSteps<6>); break;
    case 7: run(ConscienceSteps<7>); break;
    case 8: run(ConscienceSteps<8>); break;
    default: run(ConscienceSteps<0>);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CompclustOnlineEpoch, OnlineEpoch,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("kernel")
                                  .Attr<int64_t>("threads")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CompclustConscienceEpoch, ConscienceEpoch,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
