/* Shared by the compiled kernels (selective_scan.c, ss4rec_step.c): a branch-free float exp that
 * vectorises without -ffast-math. Included, not linked: each library keeps its own inline copy. */
#ifndef SS4REC_FAST_EXP_H
#define SS4REC_FAST_EXP_H

#include <math.h>
#include <stdint.h>

/* exp(x) for x in float range: 2^k * p(r), x = k ln2 + r, |r| <= ln2 / 2, degree-6 polynomial
 * (relative error about 2e-7). Below -87.3 it returns 0 (no denormals), above 88.7 +inf. Branch-free so
 * that a loop over it vectorises. */
static inline float fast_expf(float x) {
    const float lo = -87.3f, hi = 88.7f;
    float xc = x < lo ? lo : (x > hi ? hi : x);
    float kf = nearbyintf(xc * 1.44269504088896341f);
    /* fmaf, not a - b * c: the library is compiled with -fassociative-math (for pairwise sums), which
     * could otherwise merge the two halves of ln2 and lose the exactness of r */
    float r = fmaf(-kf, 0.693145751953125f, xc); /* ln2 split in two for an exact k ln2 */
    r = fmaf(-kf, 1.428606765330187e-06f, r);
    float p = 1.0f / 720.0f;
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    union { float f; int32_t i; } s;
    s.i = ((int32_t)kf + 127) << 23;
    float e = p * s.f;
    e = x < lo ? 0.0f : e;
    return x > hi ? INFINITY : e;
}

#endif
