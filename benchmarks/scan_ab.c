/* A/B timing of two builds of the compiled selective scan (src/ss4rec/kernels/selective_scan.c), in one
 * process: fwd and bwd at B=32, L=200, D=128, N=32 (softplus, D, z, delta_bias; u, delta, z contiguous
 * (B, D, L), out and gout in (B, L, D) memory), alternating A and B in each round, min of 3 runs per round,
 * timed by the thread's CPU time (so a shared, busy machine's preemptions do not count; WALL=1 for wall
 * time, which 2 threads need). Prints the median and range over rounds of A/B ratios (> 1: B is faster).
 *
 *   gcc -O2 benchmarks/scan_ab.c -o /tmp/scan_ab -ldl
 *   # two libraries: the cached builds (SS4REC_KERNEL_DIR/libss4rec_cpu-*.so) of two versions of the source,
 *   # or by hand with the flags of ss4rec/kernels/__init__.py:
 *   #   gcc $CFLAGS -march=native -c selective_scan.c -o a.o && gcc -shared -pthread a.o -o a.so -lm
 *   /tmp/scan_ab ./a.so ./b.so 11 [threads]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { /* ss_args of selective_scan.c, ABI version 2 */
    int64_t batch, dim, len, nstate;
    const float *u, *delta, *A, *B, *C, *D, *z, *bias;
    int64_t su[3], sdelta[3], sz[3];
    int32_t softplus, nthreads;
    float *out;
    const float *gout;
    int64_t sg[3];
    float *du, *ddelta, *dz, *dA, *dB, *dC, *dD, *dbias;
    int64_t so[3], sdu[3], sddelta[3], sdz[3];
} ss_args;
typedef int (*scan_fn)(const ss_args *);

static double now(void) {
    struct timespec t;
    clock_gettime(getenv("WALL") ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static float rnd(unsigned *s) { /* uniform in [-1, 1) */
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2 - 1;
}
static float *floats(size_t n) { return (float *)malloc(n * sizeof(float)); }
static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s libA.so libB.so rounds [threads]\n", argv[0]);
        return 2;
    }
    scan_fn fwd[2], bwd[2];
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(argv[1 + i], RTLD_NOW | RTLD_LOCAL);
        if (!h) return puts(dlerror()), 1;
        int (*abi)(void) = (int (*)(void))dlsym(h, "ss4rec_abi_version");
        if (!abi || abi() != 2) return fprintf(stderr, "%s: not ABI version 2\n", argv[1 + i]), 1;
        fwd[i] = (scan_fn)dlsym(h, "ss4rec_scan_fwd"), bwd[i] = (scan_fn)dlsym(h, "ss4rec_scan_bwd");
    }
    int rounds = atoi(argv[3]);
    rounds = rounds < 1 ? 1 : rounds > 200 ? 200 : rounds;
    const int threads = argc > 4 ? atoi(argv[4]) : 1;

    const int64_t Bt = 32, L = 200, Dm = 128, N = 32;
    const size_t nbdl = Bt * Dm * L, nbln = Bt * L * N;
    unsigned seed = 1;
    float *u = floats(nbdl), *delta = floats(nbdl), *z = floats(nbdl), *g = floats(nbdl), *out = floats(nbdl);
    float *A = floats(Dm * N), *B = floats(nbln), *C = floats(nbln), *D = floats(Dm), *bias = floats(Dm);
    float *du = floats(nbdl), *ddelta = floats(nbdl), *dz = floats(nbdl), *dA = floats(Dm * N);
    float *dB = floats(nbln), *dC = floats(nbln), *dD = floats(Dm), *dbias = floats(Dm);
    for (size_t i = 0; i < nbdl; i++) u[i] = rnd(&seed), delta[i] = rnd(&seed), z[i] = rnd(&seed), g[i] = rnd(&seed);
    for (size_t i = 0; i < nbln; i++) B[i] = rnd(&seed), C[i] = rnd(&seed);
    for (int64_t i = 0; i < Dm * N; i++) A[i] = -(float)(1 + i % N); /* Mamba's initial A */
    for (int64_t i = 0; i < Dm; i++) D[i] = 1.0f, bias[i] = -4.0f + rnd(&seed);

    const int64_t bdl[3] = {Dm * L, L, 1}, bld[3] = {L * Dm, 1, Dm}; /* strides over (b, d, l) */
    ss_args a = {.batch = Bt, .dim = Dm, .len = L, .nstate = N, .u = u, .delta = delta, .A = A, .B = B,
                 .C = C, .D = D, .z = z, .bias = bias, .softplus = 1, .nthreads = threads, .out = out,
                 .gout = g, .du = du, .ddelta = ddelta, .dz = dz, .dA = dA, .dB = dB, .dC = dC, .dD = dD,
                 .dbias = dbias};
    memcpy(a.su, bdl, sizeof(bdl)), memcpy(a.sdelta, bdl, sizeof(bdl)), memcpy(a.sz, bdl, sizeof(bdl));
    memcpy(a.sdu, bdl, sizeof(bdl)), memcpy(a.sddelta, bdl, sizeof(bdl)), memcpy(a.sdz, bdl, sizeof(bdl));
    memcpy(a.so, bld, sizeof(bld)), memcpy(a.sg, bld, sizeof(bld));

    double ratio_f[200], ratio_b[200], best_ever[2][2] = {{1e9, 1e9}, {1e9, 1e9}};
    for (int r = 0; r < rounds; r++) {
        double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}}; /* [library][fwd, bwd] */
        for (int rep = 0; rep < 3; rep++)
            for (int i = 0; i < 2; i++) {
                const double t0 = now();
                fwd[i](&a);
                const double t1 = now();
                memset(dB, 0, nbln * sizeof(float)), memset(dC, 0, nbln * sizeof(float));
                const double t2 = now();
                bwd[i](&a);
                const double t3 = now();
                if (t1 - t0 < best[i][0]) best[i][0] = t1 - t0;
                if (t3 - t2 < best[i][1]) best[i][1] = t3 - t2;
            }
        ratio_f[r] = best[0][0] / best[1][0], ratio_b[r] = best[0][1] / best[1][1];
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 2; k++)
                if (best[i][k] < best_ever[i][k]) best_ever[i][k] = best[i][k];
    }
    qsort(ratio_f, rounds, sizeof(double), by_value), qsort(ratio_b, rounds, sizeof(double), by_value);
    printf("%d rounds: fwd A/B x%.3f (%.3f-%.3f)  bwd A/B x%.3f (%.3f-%.3f)  best ms A %.1f+%.1f B %.1f+%.1f\n",
           rounds, ratio_f[rounds / 2], ratio_f[0], ratio_f[rounds - 1], ratio_b[rounds / 2], ratio_b[0],
           ratio_b[rounds - 1], best_ever[0][0] * 1e3, best_ever[0][1] * 1e3, best_ever[1][0] * 1e3,
           best_ever[1][1] * 1e3);
    return 0;
}
