#include "dist/zero1.h"

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profiler.h"

namespace dsv3 {

Zero1::Zero1(const Comm& comm, int64_t arena_elements) : comm_(comm), total_(arena_elements) {
  const int64_t D = comm.size(), chunks = (total_ + kOptimizerChunk - 1) / kOptimizerChunk;
  bounds_.push_back(0);
  for (int64_t r = 0; r < D; ++r) {
    const int64_t owned = chunks / D + (r < chunks % D ? 1 : 0);
    bounds_.push_back(std::min(total_, bounds_.back() + owned * kOptimizerChunk));
  }
}

std::vector<int64_t> Zero1::shard_sizes() const {
  std::vector<int64_t> sizes;
  for (int64_t r = 0; r < comm_.size(); ++r) sizes.push_back(end(r) - begin(r));
  return sizes;
}

std::vector<int64_t> Zero1::shard_begins() const { return {bounds_.begin(), bounds_.end() - 1}; }

void Zero1::reduce_scatter(const std::vector<const float*>& local, float* grads, const std::vector<int64_t>& order) {
  DSV3_ZONE("zero1.reduce_scatter");
  const int64_t D = comm_.size(), k = int64_t(local.size()), mine = shard_end() - shard_begin();
  DSV3_CHECK(k >= 1, "[zero1] no micro-batch gradients to reduce");
  // One all-to-all per local micro-batch, straight from its gradient (the owners' slices are consecutive
  // runs of the arena, in rank order); rank q's j-th micro-batch lands at [q][j] of recv_.
  const std::vector<int64_t> send_counts = shard_sizes(), send_offsets = shard_begins();
  std::vector<int64_t> recv_counts(static_cast<size_t>(D), mine), recv_offsets(static_cast<size_t>(D));
  recv_.resize(size_t(D * k * mine));
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t q = 0; q < D; ++q) recv_offsets[size_t(q)] = (q * k + j) * mine;
    comm_.alltoallv(local[size_t(j)], send_counts, send_offsets, recv_.data(), recv_counts, recv_offsets);
  }
  // recv_ holds [rank][micro-batch][shard]; sum the parts in the step's micro-batch order.
  float* out = grads + shard_begin();
  const int64_t parts = D * k;
  std::vector<int64_t> sequence = order;
  if (sequence.empty())
    for (int64_t p = 0; p < parts; ++p) sequence.push_back(p);
  DSV3_CHECK(int64_t(sequence.size()) == parts, "[zero1] an order of ", sequence.size(), " parts for ", parts);
  parallel_for(mine, 4096, [&](int64_t b, int64_t e) {
    const float* first = recv_.data() + sequence[0] * mine;
    std::copy(first + b, first + e, out + b);
    for (int64_t p = 1; p < parts; ++p) {
      const float* part = recv_.data() + sequence[size_t(p)] * mine;
      for (int64_t i = b; i < e; ++i) out[i] = out[i] + part[i];
    }
  });
}

double Zero1::sum_of_squares(const TrainParams<float>& grads) const {
  const int64_t D = comm_.size();
  std::vector<int64_t> counts;
  for (int64_t r = 0; r < D; ++r)
    counts.push_back((end(r) - begin(r) + kOptimizerChunk - 1) / kOptimizerChunk);
  const int64_t first = shard_begin() / kOptimizerChunk;
  const std::vector<double> mine = grad_square_partials(grads, first, first + counts[size_t(comm_.rank())]);
  int64_t all_chunks = 0;
  for (int64_t c : counts) all_chunks += c;
  std::vector<double> partials(static_cast<size_t>(all_chunks));
  comm_.allgatherv(mine.data(), counts, partials.data());
  double sum = 0;
  for (double p : partials) sum += p;  // chunk order, as global_grad_norm adds them
  return sum;
}

void Zero1::allgather(float* params) const {
  DSV3_ZONE("zero1.allgather");
  comm_.allgatherv_in_place(params, shard_sizes(), shard_begins());
}

void Zero1::save_optimizer(const AdamW& shard, std::shared_ptr<const ParamLayout> layout,
                           const std::string& path) const {
  const size_t elem = shard.moment_element_bytes();
  std::vector<int64_t> counts = shard_sizes();
  for (int64_t& c : counts) c *= int64_t(elem);
  const bool root = comm_.rank() == 0;
  std::unique_ptr<AdamW> whole;
  if (root) {
    whole = std::make_unique<AdamW>(layout, shard.options());
    whole->set_steps(shard.steps());
  }
  for (const bool second : {false, true})
    comm_.gatherv_bytes(shard.moment_bytes(second), counts[size_t(comm_.rank())], counts,
                        root ? whole->moment_bytes(second) : nullptr, 0);
  if (root) whole->save(path);
}

}  // namespace dsv3
