#include "train/mtp_train.h"

#include <algorithm>

namespace dsv3 {

namespace {
// concat [rows, 2H] = [enorm(emb) | hnorm(h)]
template <typename T>
void normed_concat(const ModelConfig& c, const MtpParams<T>& w, const T* emb, const T* h, int64_t rows, T* concat) {
  const int64_t H = c.hidden_size;
  rmsnorm_forward(emb, H, w.enorm, rows, H, c.rms_norm_eps, concat, 2 * H);
  rmsnorm_forward(h, H, w.hnorm, rows, H, c.rms_norm_eps, concat + H, 2 * H);
}
}  // namespace

template <typename T>
void mtp_input_forward(const ModelConfig& c, const MtpParams<T>& w, const T* emb, const T* h, int64_t rows,
                       Workspace<T>& ws, T* out) {
  const int64_t H = c.hidden_size;
  typename Workspace<T>::Scope scope(ws);
  T* concat = ws.take(rows * 2 * H);
  normed_concat(c, w, emb, h, rows, concat);
  linear_forward(ws, concat, w.eh_proj, rows, 2 * H, H, out);
}

template <typename T>
void mtp_input_backward(const ModelConfig& c, const MtpParams<T>& w, const MtpParams<T>& dw, const T* emb,
                        const T* h, int64_t rows, const T* dout, Workspace<T>& ws, T* demb, T* dh) {
  const int64_t H = c.hidden_size;
  typename Workspace<T>::Scope scope(ws);
  T* concat = ws.take(rows * 2 * H);
  T* dconcat = ws.take(rows * 2 * H);
  normed_concat(c, w, emb, h, rows, concat);
  std::fill(dconcat, dconcat + rows * 2 * H, T(0));
  linear_backward(ws, concat, w.eh_proj, dout, rows, 2 * H, H, dconcat, dw.eh_proj);
  rmsnorm_backward(emb, H, w.enorm, dconcat, 2 * H, rows, H, c.rms_norm_eps, demb, H, dw.enorm);
  rmsnorm_backward(h, H, w.hnorm, dconcat + H, 2 * H, rows, H, c.rms_norm_eps, dh, H, dw.hnorm);
}

#define DSV3_INSTANTIATE(T)                                                                                      \
  template void mtp_input_forward(const ModelConfig&, const MtpParams<T>&, const T*, const T*, int64_t,          \
                                  Workspace<T>&, T*);                                                            \
  template void mtp_input_backward(const ModelConfig&, const MtpParams<T>&, const MtpParams<T>&, const T*,       \
                                   const T*, int64_t, const T*, Workspace<T>&, T*, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
