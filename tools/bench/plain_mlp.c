/* plain_mlp.c - the yardsticks of the latency bench (tools/bench/floors.py builds and runs this).
 *
 * Built with: gcc -O3 -march=native -ffast-math plain_mlp.c -lm
 *
 *   plain_mlp check MODEL OBS OUT    actions for every observation row (float32 in, float32 out)
 *   plain_mlp bench MODEL OBS N W    N timed inferences (after W untimed), one JSON line: p50/mean/min ns
 *   plain_mlp peak                   multiply-adds per ns one core sustains (independent FMA chains)
 *   plain_mlp stream BYTES           bytes per ns one core reads from a buffer of BYTES, read again and again
 *
 * The MLP is the twenty lines of C anyone would write: per layer, four outputs per pass over the
 * input (four accumulators, the input read once for four weight rows; gcc vectorises the pass over
 * the input), then bias and activation. Weights in torch's [out][in] order, as given.
 *
 * MODEL, little-endian: u32 n_layers; per layer u32 in, u32 out, u32 activation (0 none, 1 ELU, 2 ReLU,
 * 3 tanh), float32 weight[out][in], float32 bias[out]; then u32 squash (0 none, 1 bounded: low +
 * (tanh(x) + 1) / 2 * (high - low), 2 clip) and float32 low[act], high[act].
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LAYERS 16
#define MAX_WIDTH 4096

typedef struct {
    uint32_t in, out, act;
    float* w;
    float* b;
} layer;

static layer g_layers[MAX_LAYERS];
static uint32_t g_n, g_squash, g_obs_dim, g_act_dim;
static float g_low[MAX_WIDTH], g_high[MAX_WIDTH];
static float g_buf[2][MAX_WIDTH] __attribute__((aligned(64)));

static void die(const char* what) {
    fprintf(stderr, "plain_mlp: %s\n", what);
    exit(2);
}

static void rd(FILE* f, void* p, size_t n) {
    if (fread(p, 1, n, f) != n) die("model file cut short");
}

static void load(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) die("cannot open the model file");
    rd(f, &g_n, 4);
    if (g_n == 0 || g_n > MAX_LAYERS) die("bad layer count");
    for (uint32_t i = 0; i < g_n; i++) {
        layer* L = &g_layers[i];
        rd(f, &L->in, 4);
        rd(f, &L->out, 4);
        rd(f, &L->act, 4);
        if (!L->in || !L->out || L->in > MAX_WIDTH || L->out > MAX_WIDTH || L->act > 3) die("bad layer");
        if (i && L->in != g_layers[i - 1].out) die("layer widths do not chain");
        L->w = aligned_alloc(64, ((size_t)L->in * L->out * 4 + 63) / 64 * 64);
        L->b = aligned_alloc(64, ((size_t)L->out * 4 + 63) / 64 * 64);
        rd(f, L->w, (size_t)L->in * L->out * 4);
        rd(f, L->b, (size_t)L->out * 4);
    }
    g_obs_dim = g_layers[0].in;
    g_act_dim = g_layers[g_n - 1].out;
    rd(f, &g_squash, 4);
    rd(f, g_low, g_act_dim * 4);
    rd(f, g_high, g_act_dim * 4);
    fclose(f);
}

/* y = act(W x + b), four outputs per pass over x. */
static void dense(const layer* L, const float* restrict x, float* restrict y) {
    const uint32_t n = L->in;
    uint32_t o = 0;
    for (; o + 4 <= L->out; o += 4) {
        const float* w0 = L->w + (size_t)o * n;
        const float *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (uint32_t k = 0; k < n; k++) {
            s0 += w0[k] * x[k];
            s1 += w1[k] * x[k];
            s2 += w2[k] * x[k];
            s3 += w3[k] * x[k];
        }
        y[o] = s0;
        y[o + 1] = s1;
        y[o + 2] = s2;
        y[o + 3] = s3;
    }
    for (; o < L->out; o++) {
        const float* w0 = L->w + (size_t)o * n;
        float s0 = 0;
        for (uint32_t k = 0; k < n; k++) s0 += w0[k] * x[k];
        y[o] = s0;
    }
    for (o = 0; o < L->out; o++) {
        float v = y[o] + L->b[o];
        if (L->act == 1) v = v > 0 ? v : expf(v) - 1.0f;
        else if (L->act == 2) v = v > 0 ? v : 0.0f;
        else if (L->act == 3) v = tanhf(v);
        y[o] = v;
    }
}

static void infer(const float* obs, float* act) {
    const float* x = obs;
    for (uint32_t i = 0; i < g_n; i++) {
        dense(&g_layers[i], x, g_buf[i & 1]);
        x = g_buf[i & 1];
    }
    for (uint32_t a = 0; a < g_act_dim; a++) {
        float v = x[a];
        if (g_squash == 1) v = g_low[a] + (tanhf(v) + 1.0f) * 0.5f * (g_high[a] - g_low[a]);
        else if (g_squash == 2) v = fminf(fmaxf(v, g_low[a]), g_high[a]);
        act[a] = v;
    }
}

static float* read_rows(const char* path, uint32_t dim, size_t* rows) {
    FILE* f = fopen(path, "rb");
    if (!f) die("cannot open the observations file");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0 || n % (4 * (long)dim)) die("observations file is not whole float32 rows of obs_dim");
    float* p = malloc((size_t)n);
    rd(f, p, (size_t)n);
    fclose(f);
    *rows = (size_t)n / (4 * dim);
    return p;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* Independent FMA chains, each as wide as the widest vector -march=native gives: enough of them to
 * cover the FMA latency on every unit, so the rate is the issue rate (the compute floor). */
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define CHAINS 10
typedef float vec __attribute__((vector_size(LANES * 4)));

static double peak(void) {
    vec a, b, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9;
    for (int i = 0; i < LANES; i++) {
        a[i] = 0.999999f;
        b[i] = 1e-7f;
    }
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = b;
    const long iters = 1000000;  /* short repetitions, the best kept: on a shared core some run undisturbed */
    double best = 0;
    for (int rep = 0; rep < 40; rep++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b, c4 = c4 * a + b;
            c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b, c8 = c8 * a + b, c9 = c9 * a + b;
            __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7),
                             "+v"(c8), "+v"(c9));
        }
        double rate = (double)iters * CHAINS * LANES / (now_ns() - t0);
        if (rate > best) best = rate;
    }
    vec s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9;
    if (s[0] == 12345.0f) printf("#");
    return best;
}

static double stream(size_t bytes) {
    size_t n = (bytes + sizeof(vec) - 1) / sizeof(vec);
    vec* buf = aligned_alloc(64, n * sizeof(vec));
    for (size_t i = 0; i < n; i++)
        for (int l = 0; l < LANES; l++) buf[i][l] = (float)(i % 7) * 1e-3f;
    long reps = (long)(2e7 / (double)(n * sizeof(vec))) + 1;
    double best = 0;
    vec s[4] = {0};
    for (int r = 0; r < 40; r++) {
        double t0 = now_ns();
        for (long k = 0; k < reps; k++) {
            size_t i = 0;
            for (; i + 4 <= n; i += 4) {
                s[0] += buf[i];
                s[1] += buf[i + 1];
                s[2] += buf[i + 2];
                s[3] += buf[i + 3];
            }
            for (; i < n; i++) s[0] += buf[i];
            __asm__ volatile("" : "+v"(s[0]), "+v"(s[1]), "+v"(s[2]), "+v"(s[3]));
        }
        double rate = (double)reps * n * sizeof(vec) / (now_ns() - t0);
        if (rate > best) best = rate;
    }
    if (s[0][0] + s[1][0] + s[2][0] + s[3][0] == 12345.0f) printf("#");
    free(buf);
    return best;
}

int main(int argc, char** argv) {
    if (argc == 2 && !strcmp(argv[1], "peak")) {
        printf("{\"macs_per_ns\": %.4f, \"lanes\": %d, \"chains\": %d}\n", peak(), LANES, CHAINS);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "stream")) {
        long bytes = atol(argv[2]);
        if (bytes <= 0) die("stream: BYTES must be > 0");
        printf("{\"bytes_per_ns\": %.4f, \"bytes\": %ld}\n", stream((size_t)bytes), bytes);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "check")) {
        load(argv[2]);
        size_t rows;
        float* obs = read_rows(argv[3], g_obs_dim, &rows);
        float* act = malloc(rows * g_act_dim * 4);
        for (size_t r = 0; r < rows; r++) infer(obs + r * g_obs_dim, act + r * g_act_dim);
        FILE* f = fopen(argv[4], "wb");
        if (!f || fwrite(act, 4, rows * g_act_dim, f) != rows * g_act_dim) die("cannot write the actions");
        fclose(f);
        return 0;
    }
    if (argc == 6 && !strcmp(argv[1], "bench")) {
        load(argv[2]);
        size_t rows;
        float* obs = read_rows(argv[3], g_obs_dim, &rows);
        long n = atol(argv[4]), warm = atol(argv[5]);
        if (n < 1 || warm < 0) die("bench: N >= 1 and W >= 0");
        float act[MAX_WIDTH];
        volatile float sink = 0;
        for (long i = 0; i < warm; i++) infer(obs + (size_t)(i % (long)rows) * g_obs_dim, act);
        double* t = malloc((size_t)n * sizeof(double));
        double sum = 0;
        for (long i = 0; i < n; i++) {
            const float* o = obs + (size_t)(i % (long)rows) * g_obs_dim;
            double t0 = now_ns();
            infer(o, act);
            t[i] = now_ns() - t0;
            sink += act[0];
            sum += t[i];
        }
        qsort(t, (size_t)n, sizeof(double), cmp);
        printf("{\"n\": %ld, \"p50_ns\": %.1f, \"p99_ns\": %.1f, \"mean_ns\": %.1f, \"min_ns\": %.1f, \"max_ns\": %.1f}\n",
               n, t[n / 2], t[(size_t)(n * 0.99)], sum / n, t[0], t[n - 1]);
        return 0;
    }
    fprintf(stderr, "usage: plain_mlp check MODEL OBS OUT | bench MODEL OBS N WARMUP | peak | stream BYTES\n");
    return 2;
}
