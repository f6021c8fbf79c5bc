/* One recurrent step of SS4Rec (time-aware S5 + Mamba per layer) for a batch of users, float32, CPU.
 *
 * The same formulas as ``SS4Rec.step`` (src/ss4rec/models/ss4rec.py) for B rows, one row at a time:
 *
 *   dt   = encoded gap (seconds / unit, floor, log1p as the model's options say)
 *   S5:    Lambda_bar = exp(Lambda dt rate), zoh = (Lambda_bar - 1) / Lambda (expm1 form when |z| < 1),
 *          s = Lambda_bar s + zoh (B_tilde u),  y = Re(C s) + D u,  x = LayerNorm(x + y)
 *   Mamba: x, z = in_proj(x); conv state shifts in x; x = silu(conv . w + b); dt, B, C = x_proj(x);
 *          dt = softplus(dt_proj(dt) + bias); h = exp(dt A) h + dt x B; y = (<h, C> + D x) silu(z);
 *          x = LayerNorm(x + out_proj(y))
 *   feed-forward (model.ffn): x = LayerNorm'(x + W2 gelu(W1 x + b1) + b2), exact (erf) GELU
 *
 * At batch 1 PyTorch spends ~100 dispatches on this; here it is one call of a few microseconds. Weights
 * come pre-laid-out by the caller (ss4rec/kernels/step.py): every matrix as (in, out) row-major, so each
 * product is a sequence of axpy updates vectorised over the output. The new states are written to fresh
 * buffers; the old ones are only read. Plain C99, no intrinsics; exp inside the Mamba state update is the
 * same branch-free polynomial as selective_scan.c (copied: that file belongs to the training kernels).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ST_ABI_VERSION 2
#define ST_MAX_WIDTH 1024 /* stack buffers of a few widths: 44 KiB, fine on any thread */

typedef struct {
    int64_t P, Di, K, R, N;
    const float *rate, *lre, *lim;   /* (P,) each; rate NULL: no S5 block */
    const float *B_real, *C_real_T;  /* (H, 2P), (2P, H) */
    const float *D;                  /* (H,) */
    const float *W_in;               /* (H, 2 Di); NULL: no Mamba block */
    const float *conv_w, *conv_b;    /* (Di, K), (Di,) or NULL */
    const float *W_x, *W_dt;         /* (Di, R + 2N), (R, Di) */
    const float *dt_bias, *A, *Dm;   /* (Di,), (Di, N), (Di,) */
    const float *W_out;              /* (Di, H) */
    const float *norm_w, *norm_b;    /* (H,) */
    float eps;
    int64_t F;                       /* the feed-forward's inner width */
    const float *W1, *b1, *W2, *b2;  /* (H, F), (F,), (F, H), (H,); W1 NULL: no feed-forward block */
    const float *ff_norm_w, *ff_norm_b; /* (H,): its own LayerNorm */
    float ff_eps;
} st_layer;

typedef struct {
    int64_t n_layers, H;
    const float *emb, *remb;         /* (N + 1, H); (11, H) or NULL */
    int32_t use_time, known, floor_gap, log1p_gap;
    double scale, min_gap;
    const st_layer *layers;
} st_model;

int ss4rec_step_abi_version(void) { return ST_ABI_VERSION; }

#include "fast_exp.h"
#define st_exp fast_expf

/* out (n_out) = x (n_in) @ W (n_in, n_out) [+ out when accumulate] */
static void st_matvec(const float *restrict x, const float *restrict W, int64_t n_in, int64_t n_out,
                      float *restrict out) {
    memset(out, 0, (size_t)n_out * sizeof(float));
    for (int64_t i = 0; i < n_in; i++) {
        const float xi = x[i];
        const float *restrict w = W + i * n_out;
        for (int64_t j = 0; j < n_out; j++) out[j] += xi * w[j];
    }
}

static void st_layer_norm(float *restrict x, const float *restrict add, const float *restrict w,
                          const float *restrict b, float eps, int64_t H) {
    float mean = 0.0f, var = 0.0f;
    for (int64_t h = 0; h < H; h++) {
        x[h] += add[h];
        mean += x[h];
    }
    mean /= (float)H;
    for (int64_t h = 0; h < H; h++) {
        const float c = x[h] - mean;
        var += c * c;
    }
    const float rstd = 1.0f / sqrtf(var / (float)H + eps);
    for (int64_t h = 0; h < H; h++) x[h] = (x[h] - mean) * rstd * w[h] + b[h];
}

static inline float st_silu(float v) { return v / (1.0f + expf(-v)); }

static inline float st_gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

/* states: per layer i, old[3i] / new[3i] the S5 state (B, P) complex64 as float pairs, [3i + 1] the conv
 * state (B, Di, K), [3i + 2] the SSM state (B, Di, N); entries of absent blocks are ignored. Returns 0, or
 * -1 when a width exceeds ST_MAX_WIDTH. */
int ss4rec_step_f32(const st_model *m, int64_t batch, const int64_t *items, const float *ratings,
                    const int64_t *times, const int64_t *next_times, const int64_t *prev_time,
                    const int64_t *count, float *const *old_states, float *const *new_states, float *out) {
    const int64_t H = m->H;
    float x[ST_MAX_WIDTH], y[ST_MAX_WIDTH], xz[2 * ST_MAX_WIDTH], xc[ST_MAX_WIDTH], xdbl[ST_MAX_WIDTH],
        delta[ST_MAX_WIDTH], bu[2 * ST_MAX_WIDTH], inner[2 * ST_MAX_WIDTH];
    if (H > ST_MAX_WIDTH) return -1;
    for (int64_t l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        if (2 * L->P > 2 * ST_MAX_WIDTH || L->Di > ST_MAX_WIDTH || L->R + 2 * L->N > ST_MAX_WIDTH ||
            L->F > 2 * ST_MAX_WIDTH)
            return -1;
    }
    for (int64_t b = 0; b < batch; b++) {
        /* the step scale of this position */
        float dt = 1.0f;
        if (m->use_time) {
            int64_t gap;
            if (m->known) gap = next_times[b] > 0 ? next_times[b] - times[b] : 0;
            else gap = count[b] > 0 ? times[b] - prev_time[b] : 0;
            if (gap < 0) gap = 0;
            double g = (double)gap;
            if (m->scale != 1.0) g = g / m->scale;
            if (m->floor_gap && g < m->min_gap) g = m->min_gap;
            if (m->log1p_gap) g = log1p(g);
            dt = (float)g;
        }
        /* the input: item embedding (+ rating embedding) */
        memcpy(x, m->emb + items[b] * H, (size_t)H * sizeof(float));
        if (m->remb) {
            float bucket = nearbyintf(ratings[b] * 2.0f);
            bucket = bucket < 0.0f ? 0.0f : (bucket > 10.0f ? 10.0f : bucket);
            const float *r = m->remb + (int64_t)bucket * H;
            for (int64_t h = 0; h < H; h++) x[h] += r[h];
        }
        for (int64_t l = 0; l < m->n_layers; l++) {
            const st_layer *L = &m->layers[l];
            if (L->rate) {
                const int64_t P = L->P;
                const float *s_old = old_states[3 * l] + b * 2 * P;
                float *s_new = new_states[3 * l] + b * 2 * P;
                st_matvec(x, L->B_real, H, 2 * P, bu);
                for (int64_t p = 0; p < P; p++) {
                    const float step = dt * L->rate[p];
                    const float re = L->lre[p] * step, im = L->lim[p] * step;
                    const float e = expf(re), c = cosf(im), s = sinf(im);
                    float em1;
                    if (fabsf(re) + fabsf(im) < 1.0f) {
                        const float hs = sinf(im / 2.0f);
                        em1 = expm1f(re) * c - 2.0f * hs * hs;
                    } else {
                        em1 = e * c - 1.0f;
                    }
                    const float lb_re = e * c, lb_im = e * s;
                    /* zoh = (em1 + i e s) / Lambda, Smith's division */
                    const float nr = em1, ni = e * s, dr = L->lre[p], di = L->lim[p];
                    float zr, zi;
                    if (fabsf(dr) >= fabsf(di)) {
                        const float rat = di / dr, scl = 1.0f / (dr + di * rat);
                        zr = (nr + ni * rat) * scl;
                        zi = (ni - nr * rat) * scl;
                    } else {
                        const float rat = dr / di, scl = 1.0f / (di + dr * rat);
                        zr = (nr * rat + ni) * scl;
                        zi = (ni * rat - nr) * scl;
                    }
                    const float sr = s_old[2 * p], si = s_old[2 * p + 1];
                    const float ur = bu[2 * p], ui = bu[2 * p + 1];
                    s_new[2 * p] = (lb_re * sr - lb_im * si) + (zr * ur - zi * ui);
                    s_new[2 * p + 1] = (lb_re * si + lb_im * sr) + (zr * ui + zi * ur);
                }
                st_matvec(s_new, L->C_real_T, 2 * P, H, y);
                for (int64_t h = 0; h < H; h++) y[h] += L->D[h] * x[h];
                st_layer_norm(x, y, L->norm_w, L->norm_b, L->eps, H);
            }
            if (L->W_in) {
                const int64_t Di = L->Di, K = L->K, R = L->R, N = L->N;
                const float *c_old = old_states[3 * l + 1] + b * Di * K;
                float *c_new = new_states[3 * l + 1] + b * Di * K;
                const float *h_old = old_states[3 * l + 2] + b * Di * N;
                float *h_new = new_states[3 * l + 2] + b * Di * N;
                st_matvec(x, L->W_in, H, 2 * Di, xz);
                for (int64_t d = 0; d < Di; d++) {
                    float acc = 0.0f;
                    for (int64_t k = 0; k < K - 1; k++) {
                        c_new[d * K + k] = c_old[d * K + k + 1];
                        acc += c_new[d * K + k] * L->conv_w[d * K + k];
                    }
                    c_new[d * K + K - 1] = xz[d];
                    acc += xz[d] * L->conv_w[d * K + K - 1];
                    if (L->conv_b) acc += L->conv_b[d];
                    xc[d] = st_silu(acc);
                }
                st_matvec(xc, L->W_x, Di, R + 2 * N, xdbl);
                st_matvec(xdbl, L->W_dt, R, Di, delta);
                const float *Bn = xdbl + R, *Cn = xdbl + R + N;
                for (int64_t d = 0; d < Di; d++) {
                    const float v = delta[d] + L->dt_bias[d];
                    const float dd = v > 20.0f ? v : log1pf(expf(v));
                    const float dx = dd * xc[d];
                    const float *A = L->A + d * N;
                    const float *ho = h_old + d * N;
                    float *hn = h_new + d * N;
                    float acc = 0.0f;
                    for (int64_t n = 0; n < N; n++) {
                        const float h = st_exp(dd * A[n]) * ho[n] + dx * Bn[n];
                        hn[n] = h;
                        acc += h * Cn[n];
                    }
                    y[d] = (acc + L->Dm[d] * xc[d]) * st_silu(xz[Di + d]);
                }
                st_matvec(y, L->W_out, Di, H, bu);
                st_layer_norm(x, bu, L->norm_w, L->norm_b, L->eps, H);
            }
            if (L->W1) {
                const int64_t F = L->F;
                st_matvec(x, L->W1, H, F, inner);
                for (int64_t f = 0; f < F; f++) inner[f] = st_gelu(inner[f] + L->b1[f]);
                st_matvec(inner, L->W2, F, H, y);
                for (int64_t h = 0; h < H; h++) y[h] += L->b2[h];
                st_layer_norm(x, y, L->ff_norm_w, L->ff_norm_b, L->ff_eps, H);
            }
        }
        memcpy(out + b * H, x, (size_t)H * sizeof(float));
    }
    return 0;
}
