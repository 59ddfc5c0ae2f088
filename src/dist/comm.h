// The process group a run belongs to: every rank of an `mpirun` launch, or a group of one when dsv3 runs
// on its own (then MPI is never initialised and every collective is a copy). Only the collectives the
// parallel trainer needs, each with a fixed reduction order where it reduces, so results never depend
// on message arrival (SPEC.md §4; the parallel layouts are in layout.h).
//
// MPI is initialised on first use when the process was started by mpirun (OpenMPI's OMPI_COMM_WORLD_SIZE
// or a PMI/PMIx rank in the environment) with MPI_THREAD_FUNNELED: only the thread that called it talks
// to MPI; the OpenMP workers never do. finalize_comm() ends it (tools/main.cpp, on every exit path);
// abort_comm() stops every rank when one fails, so none waits forever in a collective.
#pragma once

#include <cstdint>
#include <vector>

#include "core/trace.h"

namespace dsv3 {

class Comm {
 public:
  // The world group: all ranks of the launch.
  static Comm& world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool distributed() const { return size_ > 1; }
  // The ranks of this group with the same color, as a group of their own ordered by key (MPI_Comm_split;
  // every rank of this group must call it). A group of one when this group is not distributed.
  Comm split(int color, int key) const;

  void barrier() const;
  // out[r·n + i] = rank r's send[i], on every rank.
  void allgather(const double* send, int64_t n, double* out) const;
  // Rank r contributes send (counts[r] floats, counts the same on every rank); out receives them all in
  // rank order (offsets = prefix sums of counts).
  void allgatherv(const float* send, const std::vector<int64_t>& counts, float* out) const;
  void allgatherv(const double* send, const std::vector<int64_t>& counts, double* out) const;
  // Bytes gathered to `root` in rank order (recv only read on root).
  void gatherv_bytes(const void* send, int64_t bytes, const std::vector<int64_t>& counts, void* recv, int root) const;
  // Bytes from `root` to every rank: rank r receives counts[r] bytes starting at prefix(counts)[r].
  void scatterv_bytes(const void* send, const std::vector<int64_t>& counts, void* recv, int root) const;
  // send_counts[r] floats to rank r from send_offsets[r], recv_counts[r] from rank r to recv_offsets[r].
  void alltoallv(const float* send, const std::vector<int64_t>& send_counts, const std::vector<int64_t>& send_offsets,
                 float* recv, const std::vector<int64_t>& recv_counts, const std::vector<int64_t>& recv_offsets) const;
  // send_bytes[r] bytes to rank r, recv_bytes[r] from it (blocks consecutive in rank order).
  void alltoallv_bytes(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                       const std::vector<int64_t>& recv_bytes) const;
  // In place: rank r's counts[r] floats already sit at offsets[r] of `data`; every rank gets all blocks.
  void allgatherv_in_place(float* data, const std::vector<int64_t>& counts, const std::vector<int64_t>& offsets) const;
  // Element-wise sum of integers on every rank (exact, so the order does not matter).
  void allreduce_sum(int64_t* values, int64_t n) const;
  void broadcast(double* values, int64_t n, int root) const;
  // Point to point (MPI's tags name the message). isend_bytes starts sending and returns at once: the
  // buffer must stay untouched until wait(request) returns. recv_bytes blocks until the message is in.
  int64_t isend_bytes(const void* data, int64_t bytes, int peer, int tag) const;
  void recv_bytes(void* data, int64_t bytes, int peer, int tag) const;
  static void wait(int64_t request);

 private:
  Comm() = default;
  int rank_ = 0, size_ = 1;
  int64_t handle_ = 0;  // the MPI communicator as its Fortran handle (MPI_Comm_c2f), so mpi.h stays out of here
};

// Every rank's trace events on rank 0, in rank order, each with `process` set to its rank; empty on
// the other ranks. Every rank of the group calls it.
std::vector<TraceEvent> gather_trace_events(const Comm& comm, const std::vector<TraceEvent>& mine);

// True when the environment says mpirun started this process (MPI is then initialised on first use).
bool launched_by_mpirun();
// Ends MPI if it was initialised (every rank must call it before exiting normally).
void finalize_comm();
// Stops every rank of the launch (after an error on this one); a no-op without MPI.
void abort_comm(int code);

}  // namespace dsv3
