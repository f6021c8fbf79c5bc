/* Fused selective scan (Mamba's S6) for the CPU, forward and backward, float32.
 *
 * One (batch b, channel d) pair at a time, its d_state states in registers / L1:
 *
 *   dt_t = softplus(delta_t + bias)            (or delta_t + bias without softplus)
 *   h_t  = exp(dt_t A) * h_{t-1} + dt_t u_t B_t          h, A, B_t, C_t: (N,)
 *   y_t  = <h_t, C_t> + D u_t ;   out_t = y_t * silu(z_t)
 *
 * The backward recomputes the states of one (b, d) pair into a scratch buffer of (L, N) floats (no
 * (B, L, D, N) tensor anywhere), then runs the adjoint G_t = dL/dh_t backwards through time, for two
 * channels of one batch row at once (they share the rows B_t, C_t, dB_t, dC_t):
 *
 *   G_t = gy_t C_t + exp(dt_{t+1} A) G_{t+1},   gy_t = dL/dy_t = g_t silu(z_t)
 *   dB_t += G_t dt_t u_t ; dC_t += gy_t h_t ; d(dt_t A) = G_t exp(dt_t A) h_{t-1}
 *
 * Work is split over (b, d) pairs (forward) or over b (backward, so that dB and dC, which sum over d,
 * have one writer each) across plain pthreads; the per-channel sums (dA, dD, dbias) are reduced from
 * per-thread partial buffers. Layouts: u, delta, z, gout, out, du, ddelta, dz are (B, D, L) with any
 * element strides (the caller picks the memory order that spares a transposing copy downstream);
 * A (D, N), B and C (B, L, N) contiguous; every output is contiguous (B, D, L), (B, L, N) or (D, N).
 *
 * The file is plain C99 + pthreads, vectorised by the compiler over the N states (no intrinsics, so it
 * builds for whatever CPU installs it; generic vector extensions only for rowsums16, with a plain-C
 * fallback). exp is our own range-reduced polynomial, written so the compiler can vectorise it without
 * -ffast-math (which would also pull in crtfastmath.o and flush denormals to zero for the whole process
 * when linked); the decays exp(dt A) use a cheaper 2^x (ss_exp2). Where the time goes at B=32, L=200,
 * D=128, N=32 on one Zen 4 core: forward about 9 ms (the exp is most of it), backward about 18 ms
 * (recompute 7-8, the adjoint loop and its dB/dC read-modify-writes the rest).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SS_ABI_VERSION 2

typedef struct {
    int64_t batch, dim, len, nstate;
    const float *u, *delta, *A, *B, *C, *D, *z, *bias; /* D, z, bias may be NULL */
    int64_t su[3], sdelta[3], sz[3];                    /* element strides over (b, d, l) */
    int32_t softplus, nthreads;
    float *out;                                         /* forward: (B, D, L), strides so */
    const float *gout;                                  /* backward: dL/dout with strides sg */
    int64_t sg[3];
    float *du, *ddelta, *dz;                            /* (B, D, L); dz only when z */
    float *dA, *dB, *dC, *dD, *dbias;                   /* (D, N), (B, L, N) x2, (D,), (D,) */
    int64_t so[3], sdu[3], sddelta[3], sdz[3];          /* element strides of out, du, ddelta, dz */
} ss_args;

int ss4rec_abi_version(void) { return SS_ABI_VERSION; }

#include "fast_exp.h"
#define ss_exp fast_expf

/* 2^x for the state decays exp(dt A) = 2^(dt A log2(e)) inside the scans, where it is the bulk of the
 * arithmetic, so fewer operations than ss_exp: x = k + f, k = round(x), |f| <= 1/2 exactly (no Cody-Waite
 * split), 2^f by a degree-5 minimax polynomial with p(0) = 1 exactly (relative error below 2e-7 in float
 * arithmetic, about ss_exp's), 2^k put into the exponent bits. x is clamped to [-127, 128]: k = -127 gives
 * biased exponent 0, i.e. exactly 0 (x <= -126.5), k = 128 gives +inf; NaN stays NaN. */
static inline float ss_exp2(float x, int nonpositive) {
    float xc = x < -127.0f ? -127.0f : x;
    if (!nonpositive) xc = xc > 128.0f ? 128.0f : xc; /* the caller knows when x <= 0 (or NaN) */
    const float kf = nearbyintf(xc), f = xc - kf;
    float p = 1.3264727265199655e-3f;
    p = fmaf(p, f, 9.671512702449736e-3f);
    p = fmaf(p, f, 5.550733743661321e-2f);
    p = fmaf(p, f, 2.4022242084416962e-1f);
    p = fmaf(p, f, 6.931469775985883e-1f);
    p = fmaf(p, f, 1.0f);
    union { float f; int32_t i; } s;
    s.i = ((int32_t)kf + 127) << 23;
    return p * s.f;
}

/* log1p(y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) in [0, 1/3], odd series to s^13 (error < 1e-8,
 * and exact to first order for tiny y). Branch-free, vectorisable. */
static inline float ss_log1p_unit(float y) {
    const float s = y / (2.0f + y), s2 = s * s;
    float p = 1.0f / 13.0f;
    p = fmaf(p, s2, 1.0f / 11.0f);
    p = fmaf(p, s2, 1.0f / 9.0f);
    p = fmaf(p, s2, 1.0f / 7.0f);
    p = fmaf(p, s2, 1.0f / 5.0f);
    p = fmaf(p, s2, 1.0f / 3.0f);
    p = fmaf(p, s2, 1.0f);
    return 2.0f * s * p;
}

/* softplus as torch computes it (linear above 20): max(x, 0) + log1p(exp(-|x|)) */
static inline float ss_softplus(float x) {
    const float ax = x < 0.0f ? -x : x, pos = x > 0.0f ? x : 0.0f;
    const float v = pos + ss_log1p_unit(ss_exp(-ax));
    return x > 20.0f ? x : v;
}

static inline float ss_sigmoid(float x) { return 1.0f / (1.0f + ss_exp(-x)); }

#define AT(p, s, b, d, t) ((p)[(b) * (s)[0] + (d) * (s)[1] + (t) * (s)[2]])

/* Per-thread scratch: per-time values of one (b, d) pair, computed in vectorised passes over t before the
 * recurrence (scalar transcendental functions inside the time loop would cost more than the states). */
typedef struct {
    float *u, *dt, *gate, *dgate, *dsp, *g, *ys, *swa; /* (L,) each */
    float *p1;                                         /* (Lpad, 16) lane partials of <h_t, C_t> */
    float *hs, *ea;                                    /* (L, N) each, backward only */
} ss_work;

static int work_alloc(ss_work *w, int64_t L, int64_t N, int backward) {
    const int64_t Lpad = (L + 15) / 16 * 16; /* whole blocks of 16 rows for rowsums16 */
    const size_t n = (size_t)L * (backward ? 8 + 2 * (size_t)N : 4) + (size_t)Lpad * 16;
    float *p = (float *)calloc(n + 16, sizeof(float)); /* zeroed: padding rows sum to 0 */
    memset(w, 0, sizeof(*w));
    if (!p) return -1;
    w->u = p, w->dt = p + L, w->gate = p + 2 * L, w->ys = p + 3 * L, w->p1 = p + 4 * L;
    if (backward) {
        float *q = w->p1 + Lpad * 16;
        w->dgate = q, w->dsp = q + L, w->g = q + 2 * L, w->swa = q + 3 * L;
        w->hs = q + 4 * L, w->ea = w->hs + L * N;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * y_t = <h_t, C_t> without a horizontal reduction per time step (about 9 shuffles and adds, a fifth of a
 * forward step). When N % 16 == 0 the recurrence folds the N products into 16 lane partials (n mod 16;
 * vertical adds only) and stores them as row t of P (Lpad, 16); rowsums16 then reduces 16 rows at once
 * with a transposing tree: 30 two-vector shuffles and 15 adds for 16 sums. Written with generic vector
 * extensions (GCC >= 12, clang), which the compiler lowers to whatever the CPU has; other compilers (or
 * -DSS_PLAIN_C) get the plain loop.
 * ------------------------------------------------------------------------------------------------- */
#if (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)) && !defined(SS_PLAIN_C)
typedef float ss_v16 __attribute__((vector_size(64)));
typedef float ss_v16u __attribute__((vector_size(64), aligned(4), may_alias)); /* unaligned access */
#define SS_SHUF __builtin_shufflevector
/* out[r] = sum of the 16 floats of row r of P (16 rows) */
static inline void rowsums16(const float *P, float *out) {
    ss_v16 x[8], y[4], z[2], s;
    /* each level halves the partials per row and doubles the rows per vector */
    for (int i = 0; i < 8; i++) {
        const ss_v16 r0 = *(const ss_v16u *)(P + 32 * i), r1 = *(const ss_v16u *)(P + 32 * i + 16);
        x[i] = SS_SHUF(r0, r1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SS_SHUF(r0, r1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
    for (int i = 0; i < 4; i++)
        y[i] = SS_SHUF(x[2 * i], x[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               SS_SHUF(x[2 * i], x[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int i = 0; i < 2; i++)
        z[i] = SS_SHUF(y[2 * i], y[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               SS_SHUF(y[2 * i], y[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    s = SS_SHUF(z[0], z[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
        SS_SHUF(z[0], z[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *(ss_v16u *)out = s;
}
#else
static inline void rowsums16(const float *P, float *out) {
    for (int r = 0; r < 16; r++) {
        float s = 0.0f;
        for (int j = 0; j < 16; j++) s += P[r * 16 + j];
        out[r] = s;
    }
}
#endif

/* out[t] = sum of row t of P (Lpad, 16), t < L */
static void rowsums(const float *P, int64_t L, float *out) {
    float last[16];
    int64_t t = 0;
    for (; t + 16 <= L; t += 16) rowsums16(P + t * 16, out + t);
    if (t < L) {
        rowsums16(P + t * 16, last);
        memcpy(out + t, last, sizeof(float) * (size_t)(L - t));
    }
}

/* u, dt and the gate silu(z) of one pair (with their derivatives for the backward) */
static void prepare(const ss_args *a, int64_t b, int64_t d, ss_work *w, int backward) {
    const int64_t L = a->len;
    const float bias = a->bias ? a->bias[d] : 0.0f;
    float *x = w->dt, *zz = w->gate;
    for (int64_t t = 0; t < L; t++) {  /* strided loads first, then contiguous vector maths */
        w->u[t] = AT(a->u, a->su, b, d, t);
        x[t] = AT(a->delta, a->sdelta, b, d, t) + bias;
        if (a->z) zz[t] = AT(a->z, a->sz, b, d, t);
        if (backward) w->g[t] = AT(a->gout, a->sg, b, d, t);
    }
    if (a->softplus) {
        if (backward) {
#pragma omp simd
            for (int64_t t = 0; t < L; t++) w->dsp[t] = ss_sigmoid(x[t]);
        }
#pragma omp simd
        for (int64_t t = 0; t < L; t++) x[t] = ss_softplus(x[t]);
    }
    if (a->z) {
        if (backward) {
#pragma omp simd
            for (int64_t t = 0; t < L; t++) {
                const float s = ss_sigmoid(zz[t]);
                w->dgate[t] = s * (1.0f + zz[t] * (1.0f - s));
            }
        }
#pragma omp simd
        for (int64_t t = 0; t < L; t++) zz[t] = zz[t] * ss_sigmoid(zz[t]);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * the recurrence of one (b, d) pair over t, y_t = <h_t, C_t> + D u_t into ys (before the gate). The
 * backward passes ea/hs (L, N) to keep exp(dt_t A) and h_t; the forward passes NULL (both inline away).
 * N is a compile-time constant in the specialised copies below.
 * ------------------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void recurrence_loop(const ss_args *a, int64_t b, const int64_t N,
                                                                  const ss_work *w, const float *A2,
                                                                  int nonpositive, float *ea, float *hs,
                                                                  float *ys) {
    const int64_t L = a->len;
    float h[N], e_local[N];
    for (int64_t n = 0; n < N; n++) h[n] = 0.0f;
    for (int64_t t = 0; t < L; t++) {
        const float *Bt = a->B + (b * L + t) * N, *Ct = a->C + (b * L + t) * N;
        const float dt = w->dt[t], dtu = dt * w->u[t];
        float *e = ea ? ea + t * N : e_local;
#pragma omp simd
        for (int64_t n = 0; n < N; n++) e[n] = ss_exp2(dt * A2[n], nonpositive);
        if (N % 16 == 0) { /* <h_t, C_t> as 16 lane partials, summed after the loop */
#pragma omp simd
            for (int64_t n = 0; n < N; n++) h[n] = e[n] * h[n] + dtu * Bt[n];
            float *restrict pt = w->p1 + t * 16;
#pragma omp simd
            for (int64_t j = 0; j < 16; j++) {
                float s = 0.0f;
                for (int64_t k = 0; k < N; k += 16) s += h[k + j] * Ct[k + j];
                pt[j] = s;
            }
        } else {
            float y = 0.0f;
#pragma omp simd reduction(+ : y)
            for (int64_t n = 0; n < N; n++) {
                h[n] = e[n] * h[n] + dtu * Bt[n];
                y += h[n] * Ct[n];
            }
            ys[t] = y;
        }
        if (hs)
            for (int64_t n = 0; n < N; n++) hs[t * N + n] = h[n];
    }
}

static inline __attribute__((always_inline)) void recurrence(const ss_args *a, int64_t b, int64_t d,
                                                             const int64_t N, const ss_work *w,
                                                             float *ea, float *hs, float *ys) {
    const int64_t L = a->len;
    const float *A = a->A + d * N;
    const float Dd = a->D ? a->D[d] : 0.0f;
    float A2[N]; /* A2 = A log2(e): exp(dt A) = 2^(dt A2) */
    int nonpositive = 1; /* dt A <= 0 at every step (Mamba's case: A < 0, dt = softplus >= 0) */
    for (int64_t n = 0; n < N; n++) A2[n] = A[n] * 1.44269504088896341f, nonpositive &= A2[n] <= 0.0f;
    if (!a->softplus)
        for (int64_t t = 0; t < L; t++) nonpositive &= w->dt[t] >= 0.0f;
    /* two copies of the time loop: the exp's upper clamp (a compare and a blend per vector, 15% of the
     * forward) only where dt A can be positive */
    if (nonpositive)
        recurrence_loop(a, b, N, w, A2, 1, ea, hs, ys);
    else
        recurrence_loop(a, b, N, w, A2, 0, ea, hs, ys);
    if (N % 16 == 0) rowsums(w->p1, L, ys);
#pragma omp simd
    for (int64_t t = 0; t < L; t++) ys[t] += Dd * w->u[t];
}

/* forward of one (b, d) pair: out = y * silu(z) */
static inline __attribute__((always_inline)) void fwd_pair(const ss_args *a, int64_t b, int64_t d,
                                                           const int64_t N, ss_work *w) {
    const int64_t L = a->len;
    prepare(a, b, d, w, 0);
    recurrence(a, b, d, N, w, NULL, NULL, w->ys);
    for (int64_t t = 0; t < L; t++) AT(a->out, a->so, b, d, t) = a->z ? w->ys[t] * w->gate[t] : w->ys[t];
}

/* ---------------------------------------------------------------------------------------------------
 * The backward runs the adjoint of two channels d, d+1 of one batch row together ("two"; one when D is
 * odd): per step, the rows B_t, C_t are loaded and dB_t, dC_t read and written once for both channels
 * (this read-modify-write of L2-resident rows is a quarter of the backward), and the two channels' G
 * recurrences are independent chains that overlap.
 * ------------------------------------------------------------------------------------------------- */

/* per-channel state of the adjoint: G carries exp(dt_{t+1} A) G_{t+1}, dAl sums dL/dA of this pair */
typedef struct {
    const ss_work *w;
    const float *A;
    float *G, *dAl;
} ss_adj;

/* one step of the adjoint at time t (has_prev: t > 0, so that exp(dt_t A) h_{t-1} feeds dA and ddelta).
 * Each channel's two sums over n go to its ys[t] (sGB = <G_t, B_t>) and swa[t] (sum_n W_n A_n), for a
 * vectorised pass after the loop. (Folding them into lane partials for rowsums16, as the forward does,
 * measured 13% slower here.) */
static inline __attribute__((always_inline)) void adjoint_step(const ss_args *a, int64_t b, const int64_t N,
                                                               int two, const ss_adj *c0, const ss_adj *c1,
                                                               int64_t t, int has_prev) {
    const int64_t L = a->len;
    const float *restrict Bt = a->B + (b * L + t) * N, *restrict Ct = a->C + (b * L + t) * N;
    float *restrict dBt = a->dB + (b * L + t) * N, *restrict dCt = a->dC + (b * L + t) * N;
    const ss_work *w0 = c0->w, *w1 = c1->w;
    const float *restrict A0 = c0->A, *restrict A1 = c1->A;
    float *restrict G0 = c0->G, *restrict G1 = c1->G, *restrict dAl0 = c0->dAl, *restrict dAl1 = c1->dAl;
    const float *restrict e0 = w0->ea + t * N, *restrict h0 = w0->hs + t * N;
    const float *restrict e1 = w1->ea + t * N, *restrict h1 = w1->hs + t * N;
    const float *restrict hp0 = has_prev ? h0 - N : NULL, *restrict hp1 = has_prev ? h1 - N : NULL;
    const float dt0 = w0->dt[t], dtu0 = dt0 * w0->u[t], g0 = w0->g[t];
    const float dt1 = w1->dt[t], dtu1 = dt1 * w1->u[t], g1 = w1->g[t];
    float sGB0 = 0.0f, sWA0 = 0.0f, sGB1 = 0.0f, sWA1 = 0.0f;
#pragma omp simd reduction(+ : sGB0, sWA0, sGB1, sWA1)
    for (int64_t n = 0; n < N; n++) {
        const float Gn0 = g0 * Ct[n] + G0[n];
        float dc = g0 * h0[n], db = Gn0 * dtu0;
        sGB0 += Gn0 * Bt[n];
        if (has_prev) {
            G0[n] = e0[n] * Gn0;
            const float W = G0[n] * hp0[n]; /* dL/d(dt A_n) = G_t exp(dt_t A_n) h_{t-1} */
            sWA0 += W * A0[n];
            dAl0[n] += W * dt0;
        }
        if (two) {
            const float Gn1 = g1 * Ct[n] + G1[n];
            dc += g1 * h1[n], db += Gn1 * dtu1;
            sGB1 += Gn1 * Bt[n];
            if (has_prev) {
                G1[n] = e1[n] * Gn1;
                const float W = G1[n] * hp1[n];
                sWA1 += W * A1[n];
                dAl1[n] += W * dt1;
            }
        }
        dCt[n] += dc;
        dBt[n] += db;
    }
    w0->ys[t] = sGB0, w0->swa[t] = sWA0;
    if (two) w1->ys[t] = sGB1, w1->swa[t] = sWA1;
}

/* recompute the states of pair (b, d) into hs/ea (L, N); dz; from here on g = dL/dy */
static inline __attribute__((always_inline)) void bwd_setup(const ss_args *a, int64_t b, int64_t d,
                                                            const int64_t N, ss_work *w) {
    const int64_t L = a->len;
    prepare(a, b, d, w, 1);
    recurrence(a, b, d, N, w, w->ea, w->hs, w->ys);
    if (a->z) {
#pragma omp simd
        for (int64_t t = 0; t < L; t++) {
            AT(a->dz, a->sdz, b, d, t) = w->g[t] * w->ys[t] * w->dgate[t];
            w->g[t] *= w->gate[t];
        }
    }
}

/* after the adjoint, what needs its sums: du = g D + dt sGB, d(dt) = u sGB + sWA (times softplus'), dD,
 * dbias (the sums sit in ys, swa) */
static void bwd_finish(const ss_args *a, int64_t b, int64_t d, const ss_work *w, float *dD_acc,
                       float *dbias_acc) {
    const float Dd = a->D ? a->D[d] : 0.0f;
    const float *restrict sGB = w->ys, *restrict sWA = w->swa;
    float dD = 0.0f, dbias = 0.0f;
    for (int64_t t = 0; t < a->len; t++) {
        const float u = w->u[t], g = w->g[t];
        AT(a->du, a->sdu, b, d, t) = g * Dd + w->dt[t] * sGB[t];
        float ddt = u * sGB[t] + sWA[t];
        if (a->softplus) ddt *= w->dsp[t];
        AT(a->ddelta, a->sddelta, b, d, t) = ddt;
        dbias += ddt;
        dD += g * u;
    }
    *dD_acc += dD;
    *dbias_acc += dbias;
}

/* ---------------------------------------------------------------------------------------------------
 * backward of channels d (and d+1 when two) of batch row b: recompute, then the adjoint in reverse.
 * dA_acc (rows d, d+1 of (D, N)), dD_acc, dbias_acc (from d) accumulate; dB, dC rows of b accumulate over d.
 * ------------------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void bwd_group(const ss_args *a, int64_t b, int64_t d,
                                                            const int64_t N, int two, ss_work *w,
                                                            float *dA_acc, float *dD_acc, float *dbias_acc) {
    const int64_t L = a->len;
    float G[2 * N], dAl[2 * N];
    for (int64_t n = 0; n < 2 * N; n++) G[n] = dAl[n] = 0.0f;
    const ss_adj c0 = {&w[0], a->A + d * N, G, dAl}, c1 = {&w[two], a->A + (d + two) * N, G + N, dAl + N};
    bwd_setup(a, b, d, N, &w[0]);
    if (two) bwd_setup(a, b, d + 1, N, &w[1]);
    /* t = L-1 .. 1, then t = 0 (no h_{-1} term) as a separate copy: no branch inside the time loop, which
     * lets the compiler keep G and dAl in registers instead of carrying them through memory */
    for (int64_t t = L - 1; t >= 1; t--) adjoint_step(a, b, N, two, &c0, &c1, t, 1);
    adjoint_step(a, b, N, two, &c0, &c1, 0, 0);
    for (int c = 0; c <= two; c++) {
        bwd_finish(a, b, d + c, &w[c], dD_acc + c, dbias_acc + c);
        for (int64_t n = 0; n < N; n++) dA_acc[c * N + n] += dAl[c * N + n];
    }
}

/* specialised copies: a constant N lets the compiler unroll the state loops into whole vectors */
#define SS_SPECIALISE(NAME, BODY)                                                                    \
    static void NAME##_16 BODY(16) static void NAME##_32 BODY(32) static void NAME##_64 BODY(64)       \
    static void NAME##_any BODY(a->nstate)

#define FWD_BODY(NN) (const ss_args *a, int64_t b, int64_t d, ss_work *w) { fwd_pair(a, b, d, NN, w); }
SS_SPECIALISE(fwd, FWD_BODY)

#define BWD_BODY(NN, TWO)                                                                             \
    (const ss_args *a, int64_t b, int64_t d, ss_work *w, float *dA_acc, float *dD_acc, float *dbias_acc) { \
        bwd_group(a, b, d, NN, TWO, w, dA_acc, dD_acc, dbias_acc);                                     \
    }
#define BWD1_BODY(NN) BWD_BODY(NN, 0)
#define BWD2_BODY(NN) BWD_BODY(NN, 1)
SS_SPECIALISE(bwd1, BWD1_BODY)
SS_SPECIALISE(bwd2, BWD2_BODY)

typedef void (*fwd_fn)(const ss_args *, int64_t, int64_t, ss_work *);
typedef void (*bwd_fn)(const ss_args *, int64_t, int64_t, ss_work *, float *, float *, float *);

static fwd_fn pick_fwd(int64_t N) {
    return N == 16 ? fwd_16 : N == 32 ? fwd_32 : N == 64 ? fwd_64 : fwd_any;
}
static bwd_fn pick_bwd(int64_t N, int two) {
    if (two) return N == 16 ? bwd2_16 : N == 32 ? bwd2_32 : N == 64 ? bwd2_64 : bwd2_any;
    return N == 16 ? bwd1_16 : N == 32 ? bwd1_32 : N == 64 ? bwd1_64 : bwd1_any;
}

/* ---------------------------------------------------------------------------------------------------
 * threading: a fork-join over [0, work) in contiguous ranges, one range per thread, the caller taking
 * the first. torch's own pool is idle while we run (the call is synchronous), so N threads here are the
 * same N cores torch would use.
 * ------------------------------------------------------------------------------------------------- */
typedef struct {
    const ss_args *a;
    int64_t start, stop;
    int id;
    float *partial; /* backward: this thread's dA (D, N), dD (D), dbias (D); NULL in forward */
    int status;
} ss_job;

static void *fwd_job(void *p) {
    ss_job *j = (ss_job *)p;
    const ss_args *a = j->a;
    ss_work w;
    if (work_alloc(&w, a->len, a->nstate, 0)) {
        j->status = -1;
        return NULL;
    }
    fwd_fn f = pick_fwd(a->nstate);
    for (int64_t i = j->start; i < j->stop; i++) f(a, i / a->dim, i % a->dim, &w);
    free(w.u);
    return NULL;
}

static void *bwd_job(void *p) {
    ss_job *j = (ss_job *)p;
    const ss_args *a = j->a;
    const int64_t L = a->len, N = a->nstate, Dm = a->dim;
    ss_work w[2];
    if (work_alloc(&w[0], L, N, 1) | work_alloc(&w[1], L, N, 1)) { /* both run: free() sees NULL or memory */
        free(w[0].u), free(w[1].u);
        j->status = -1;
        return NULL;
    }
    float *dA = j->partial, *dD = dA + Dm * N, *dbias = dD + Dm;
    bwd_fn f2 = pick_bwd(N, 1), f1 = pick_bwd(N, 0);
    for (int64_t b = j->start; b < j->stop; b++) {
        int64_t d = 0;
        for (; d + 1 < Dm; d += 2) f2(a, b, d, w, dA + d * N, dD + d, dbias + d); /* channel pairs */
        if (d < Dm) f1(a, b, d, w, dA + d * N, dD + d, dbias + d);             /* odd D: the last one */
    }
    free(w[0].u), free(w[1].u);
    return NULL;
}

static int run_jobs(const ss_args *a, int64_t work, void *(*fn)(void *), float *partials, int64_t psize) {
    int nt = a->nthreads < 1 ? 1 : a->nthreads;
    if (nt > work) nt = (int)(work < 1 ? 1 : work);
    ss_job jobs[256];
    pthread_t tids[256];
    if (nt > 256) nt = 256;
    for (int i = 0; i < nt; i++) {
        jobs[i] = (ss_job){a, work * i / nt, work * (i + 1) / nt, i, partials ? partials + i * psize : NULL, 0};
    }
    int started = 1;
    for (int i = 1; i < nt; i++, started++)
        if (pthread_create(&tids[i], NULL, fn, &jobs[i]) != 0) break;
    /* ranges whose thread did not start run here, after our own */
    fn(&jobs[0]);
    for (int i = started; i < nt; i++) fn(&jobs[i]);
    for (int i = 1; i < started; i++) pthread_join(tids[i], NULL);
    for (int i = 0; i < nt; i++)
        if (jobs[i].status) return jobs[i].status;
    return nt;
}

/* out = scan(...). Returns the number of threads used (> 0), or < 0 on failure. */
int ss4rec_scan_fwd(const ss_args *a) {
    if (a->batch * a->dim == 0 || a->len == 0) return 1;
    return run_jobs(a, a->batch * a->dim, fwd_job, NULL, 0);
}

/* Gradients of every input; dB, dC must be zeroed by the caller. Returns threads used or < 0. */
int ss4rec_scan_bwd(const ss_args *a) {
    const int64_t Dm = a->dim, N = a->nstate, psize = Dm * N + 2 * Dm;
    int nt = a->nthreads < 1 ? 1 : a->nthreads;
    if (nt > a->batch) nt = (int)(a->batch < 1 ? 1 : a->batch);
    float *partials = (float *)calloc((size_t)(nt * psize), sizeof(float));
    if (!partials) return -1;
    ss_args local = *a;
    local.nthreads = nt;
    int used = run_jobs(&local, a->batch, bwd_job, partials, psize);
    if (used > 0) {
        memset(a->dA, 0, sizeof(float) * (size_t)(Dm * N));
        if (a->dD) memset(a->dD, 0, sizeof(float) * (size_t)Dm);
        if (a->dbias) memset(a->dbias, 0, sizeof(float) * (size_t)Dm);
        for (int i = 0; i < used; i++) {
            const float *p = partials + i * psize;
            for (int64_t k = 0; k < Dm * N; k++) a->dA[k] += p[k];
            for (int64_t k = 0; k < Dm; k++) {
                if (a->dD) a->dD[k] += p[Dm * N + k];
                if (a->dbias) a->dbias[k] += p[Dm * N + Dm + k];
            }
        }
    }
    free(partials);
    return used;
}
