/* SmoothQuant (Xiao et al., 2022): per-input-channel smoothing factors that
 * move activation outliers into the weights before W8A8 quantization.
 *
 * For linears W_1..W_n sharing an input x of cols channels,
 *   s_j = max|x_j|^alpha / max_i,r |W_i[r][j]|^(1 - alpha)
 * (the paper's eq. 4, max over calibration tokens and over every row of
 * every sharer), clamped below at 1e-5 as the reference does; then the
 * weights' columns are multiplied by s and the producer of x divided by it
 * (awq.h's qp_awq_scale_cols / qp_awq_unscale_rows). A channel the
 * calibration never saw (max|x| == 0) or with all-zero weights keeps 1. */
#ifndef QP_SMOOTH_H
#define QP_SMOOTH_H

#include <stdint.h>

void qp_smooth_scales(const float *const *w, const int64_t *rows, int n, int64_t cols, const float *act_max,
                      float alpha, float *s);

#endif
