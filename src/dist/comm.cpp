#include "dist/comm.h"

#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {

bool g_initialised = false;

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  DSV3_FAIL("[mpi] ", what, " failed: ", std::string(text, size_t(length)));
}

// MPI counts are int: larger messages would need derived types, which no run here comes near.
std::vector<int> int_counts(const std::vector<int64_t>& counts, const char* what) {
  std::vector<int> out;
  for (int64_t c : counts) {
    DSV3_CHECK(c >= 0 && c <= INT_MAX, "[mpi] ", what, ": a message of ", c, " elements exceeds MPI's int counts");
    out.push_back(int(c));
  }
  return out;
}

std::vector<int> offsets_of(const std::vector<int>& counts) {
  std::vector<int> offsets(counts.size(), 0);
  int64_t at = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    DSV3_CHECK(at <= INT_MAX, "[mpi] a gathered buffer exceeds MPI's int displacements");
    offsets[i] = int(at);
    at += counts[i];
  }
  return offsets;
}

}  // namespace

bool launched_by_mpirun() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

Comm& Comm::world() {
  static Comm comm = [] {
    Comm c;
    if (!launched_by_mpirun()) return c;
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_initialised = true;
    DSV3_CHECK(provided >= MPI_THREAD_FUNNELED, "[mpi] the MPI library gives thread level ", provided,
               ", dsv3 needs MPI_THREAD_FUNNELED");
    MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &c.size_);
    c.handle_ = int64_t(MPI_Comm_c2f(MPI_COMM_WORLD));
    return c;
  }();
  return comm;
}

void finalize_comm() {
  if (!g_initialised) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort_comm(int code) {
  if (g_initialised) MPI_Abort(MPI_COMM_WORLD, code);
}

namespace {

MPI_Comm handle_to_mpi(int64_t handle) { return MPI_Comm_f2c(MPI_Fint(handle)); }

}  // namespace

Comm Comm::split(int color, int key) const {
  if (!distributed()) return *this;
  MPI_Comm group = MPI_COMM_NULL;
  check(MPI_Comm_split(handle_to_mpi(handle_), color, key, &group), "MPI_Comm_split");
  Comm c;
  MPI_Comm_rank(group, &c.rank_);
  MPI_Comm_size(group, &c.size_);
  c.handle_ = int64_t(MPI_Comm_c2f(group));
  return c;
}

void Comm::barrier() const {
  if (distributed()) check(MPI_Barrier(handle_to_mpi(handle_)), "MPI_Barrier");
}

void Comm::allgather(const double* send, int64_t n, double* out) const {
  if (!distributed()) {
    std::memcpy(out, send, size_t(n) * sizeof(double));
    return;
  }
  DSV3_CHECK(n <= INT_MAX, "[mpi] allgather of ", n, " values exceeds MPI's int counts");
  check(MPI_Allgather(send, int(n), MPI_DOUBLE, out, int(n), MPI_DOUBLE, handle_to_mpi(handle_)), "MPI_Allgather");
}

void Comm::allgatherv(const float* send, const std::vector<int64_t>& counts, float* out) const {
  if (!distributed()) {
    std::memcpy(out, send, size_t(counts[0]) * sizeof(float));
    return;
  }
  const std::vector<int> c = int_counts(counts, "allgatherv"), offsets = offsets_of(c);
  check(MPI_Allgatherv(send, c[size_t(rank_)], MPI_FLOAT, out, c.data(), offsets.data(), MPI_FLOAT, handle_to_mpi(handle_)),
        "MPI_Allgatherv");
}

void Comm::allgatherv(const double* send, const std::vector<int64_t>& counts, double* out) const {
  if (!distributed()) {
    std::memcpy(out, send, size_t(counts[0]) * sizeof(double));
    return;
  }
  const std::vector<int> c = int_counts(counts, "allgatherv"), offsets = offsets_of(c);
  check(MPI_Allgatherv(send, c[size_t(rank_)], MPI_DOUBLE, out, c.data(), offsets.data(), MPI_DOUBLE,
                       handle_to_mpi(handle_)),
        "MPI_Allgatherv");
}

void Comm::gatherv_bytes(const void* send, int64_t bytes, const std::vector<int64_t>& counts, void* recv,
                         int root) const {
  if (!distributed()) {
    std::memcpy(recv, send, size_t(bytes));
    return;
  }
  const std::vector<int> c = int_counts(counts, "gatherv"), offsets = offsets_of(c);
  DSV3_CHECK(bytes == c[size_t(rank_)], "[mpi] gatherv: rank ", rank_, " sends ", bytes, " bytes, expected ",
             c[size_t(rank_)]);
  check(MPI_Gatherv(send, int(bytes), MPI_BYTE, recv, c.data(), offsets.data(), MPI_BYTE, root, handle_to_mpi(handle_)),
        "MPI_Gatherv");
}

void Comm::scatterv_bytes(const void* send, const std::vector<int64_t>& counts, void* recv, int root) const {
  if (!distributed()) {
    std::memcpy(recv, send, size_t(counts[0]));
    return;
  }
  const std::vector<int> c = int_counts(counts, "scatterv"), offsets = offsets_of(c);
  check(MPI_Scatterv(send, c.data(), offsets.data(), MPI_BYTE, recv, c[size_t(rank_)], MPI_BYTE, root,
                     handle_to_mpi(handle_)),
        "MPI_Scatterv");
}

void Comm::alltoallv(const float* send, const std::vector<int64_t>& send_counts,
                     const std::vector<int64_t>& send_offsets, float* recv, const std::vector<int64_t>& recv_counts,
                     const std::vector<int64_t>& recv_offsets) const {
  if (!distributed()) {
    std::memcpy(recv + recv_offsets[0], send + send_offsets[0], size_t(send_counts[0]) * sizeof(float));
    return;
  }
  const std::vector<int> sc = int_counts(send_counts, "alltoallv"), rc = int_counts(recv_counts, "alltoallv");
  const std::vector<int> so = int_counts(send_offsets, "alltoallv"), ro = int_counts(recv_offsets, "alltoallv");
  check(MPI_Alltoallv(send, sc.data(), so.data(), MPI_FLOAT, recv, rc.data(), ro.data(), MPI_FLOAT, handle_to_mpi(handle_)),
        "MPI_Alltoallv");
}

void Comm::alltoallv_bytes(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                           const std::vector<int64_t>& recv_bytes) const {
  if (!distributed()) {
    std::memcpy(recv, send, size_t(send_bytes[0]));
    return;
  }
  const std::vector<int> sc = int_counts(send_bytes, "alltoallv"), rc = int_counts(recv_bytes, "alltoallv");
  const std::vector<int> so = offsets_of(sc), ro = offsets_of(rc);
  check(MPI_Alltoallv(send, sc.data(), so.data(), MPI_BYTE, recv, rc.data(), ro.data(), MPI_BYTE, handle_to_mpi(handle_)),
        "MPI_Alltoallv");
}

void Comm::allgatherv_in_place(float* data, const std::vector<int64_t>& counts, const std::vector<int64_t>& offsets) const {
  if (!distributed()) return;
  const std::vector<int> c = int_counts(counts, "allgatherv"), o = int_counts(offsets, "allgatherv");
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, c.data(), o.data(), MPI_FLOAT, handle_to_mpi(handle_)),
        "MPI_Allgatherv");
}

void Comm::allreduce_sum(int64_t* values, int64_t n) const {
  if (!distributed() || n == 0) return;
  DSV3_CHECK(n <= INT_MAX, "[mpi] allreduce of ", n, " values exceeds MPI's int counts");
  check(MPI_Allreduce(MPI_IN_PLACE, values, int(n), MPI_INT64_T, MPI_SUM, handle_to_mpi(handle_)), "MPI_Allreduce");
}

void Comm::broadcast(double* values, int64_t n, int root) const {
  if (!distributed() || n == 0) return;
  DSV3_CHECK(n <= INT_MAX, "[mpi] broadcast of ", n, " values exceeds MPI's int counts");
  check(MPI_Bcast(values, int(n), MPI_DOUBLE, root, handle_to_mpi(handle_)), "MPI_Bcast");
}

int64_t Comm::isend_bytes(const void* data, int64_t bytes, int peer, int tag) const {
  DSV3_CHECK(distributed() && peer != rank_ && peer >= 0 && peer < size_ && bytes <= INT_MAX, "[mpi] send of ", bytes,
             " bytes to rank ", peer, " of ", size_);
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Isend(data, int(bytes), MPI_BYTE, peer, tag, handle_to_mpi(handle_), &request), "MPI_Isend");
  return int64_t(MPI_Request_c2f(request));
}

void Comm::recv_bytes(void* data, int64_t bytes, int peer, int tag) const {
  DSV3_CHECK(distributed() && peer != rank_ && peer >= 0 && peer < size_ && bytes <= INT_MAX, "[mpi] receive of ",
             bytes, " bytes from rank ", peer, " of ", size_);
  check(MPI_Recv(data, int(bytes), MPI_BYTE, peer, tag, handle_to_mpi(handle_), MPI_STATUS_IGNORE), "MPI_Recv");
}

void Comm::wait(int64_t request) {
  MPI_Request r = MPI_Request_f2c(MPI_Fint(request));
  check(MPI_Wait(&r, MPI_STATUS_IGNORE), "MPI_Wait");
}

std::vector<TraceEvent> gather_trace_events(const Comm& comm, const std::vector<TraceEvent>& mine) {
  nlohmann::json list = nlohmann::json::array();
  for (const TraceEvent& e : mine) list.push_back({e.name, e.category, e.start_us, e.duration_us});
  const std::string text = list.dump();
  const double length = double(text.size());
  std::vector<double> lengths(static_cast<size_t>(comm.size()));
  comm.allgather(&length, 1, lengths.data());
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (double l : lengths) total += counts.emplace_back(int64_t(l));
  std::string all(size_t(total), '\0');
  comm.gatherv_bytes(text.data(), int64_t(text.size()), counts, all.data(), 0);
  std::vector<TraceEvent> events;
  if (comm.rank() != 0) return events;
  int64_t at = 0;
  for (int64_t r = 0; r < comm.size(); ++r) {
    for (const nlohmann::json& e : nlohmann::json::parse(all.substr(size_t(at), size_t(counts[size_t(r)]))))
      events.push_back({e[0].get<std::string>(), e[1].get<std::string>(), e[2].get<double>(), e[3].get<double>(), r, 0});
    at += counts[size_t(r)];
  }
  return events;
}

}  // namespace dsv3
