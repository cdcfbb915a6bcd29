/* Parity of the spectral ops (kernels/ops.h "ops": framing, FFTs, element-wise
 * ops, median filters, HPSS masks, overlap-add, mel, dB, stats pooling) against
 * the CPU backend, and a batch of tracks of different lengths through frame,
 * FFT, inverse FFT and overlap-add; included by parity_impl.h (same helpers,
 * same report, tolerances there). */
#ifndef SL_PARITY_SPEC_H
#define SL_PARITY_SPEC_H

/* ---- per-op runners: inputs from the host, output back on the host ---- */

static float *run_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                        size_t first, size_t count, const float *w, int *rc)
{
    size_t n = (size_t)c->n_fft, no = batch * count * n;
    float *dx = pr_up(ctx, x, batch * len), *dw = pr_up(ctx, w, n), *dy = pr_up(ctx, NULL, no);
    *rc = sl_op_frame(ctx, c, dx, batch, len, first, count, dw, dy);
    float *h = pr_down(ctx, dy, no, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return h;
}

static void case_frame(parity *P, int n_fft, int hop, sl_pad_mode pad, int center, size_t batch, size_t len,
                       int sub)
{
    sl_stft_cfg c = {n_fft, hop, center, pad, 0};
    size_t nf = sl_stft_n_frames(&c, len);
    size_t first = sub && nf > 2 ? 1 : 0, count = sub && nf > 2 ? nf - 2 : nf;
    float *x = pr_rand(batch * len), *w = malloc((size_t)n_fft * sizeof(float));
    sl_window_hann(w, n_fft, n_fft - n_fft / 5); /* a shorter, zero-padded window */
    int rc1, rc2;
    float *want = run_frame(P->ref, &c, x, batch, len, first, count, w, &rc1);
    float *got = run_frame(P->ctx, &c, x, batch, len, first, count, w, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu len%zu n%d h%d %s c%d frames %zu+%zu", batch, len, n_fft, hop,
             pad == SL_PAD_REFLECT ? "refl" : "const", center, first, count);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "frame %s: %s", shape, sl_lasterr());
    pr_report(P, "frame", shape, pr_err(got, want, batch * count * (size_t)n_fft), TOL_FRAME);
    free(x);
    free(w);
    free(want);
    free(got);
}

static float *run_fft(sl_op_ctx *ctx, int inverse, int n_fft, size_t count, const float *in, float scale, int *rc,
                      int *preserved)
{
    size_t nb2 = 2 * ((size_t)n_fft / 2 + 1), ni = count * (inverse ? nb2 : (size_t)n_fft),
           no = count * (inverse ? (size_t)n_fft : nb2);
    float *di = pr_up(ctx, in, ni), *dout = pr_up(ctx, NULL, no);
    *rc = inverse ? sl_op_irfft(ctx, n_fft, count, di, dout, scale) : sl_op_rfft(ctx, n_fft, count, di, dout, scale);
    float *h = pr_down(ctx, dout, no, rc);
    float *after = pr_down(ctx, di, ni, rc);
    *preserved = !memcmp(after, in, ni * sizeof(float));
    free(after);
    sl_op_free(ctx, di);
    sl_op_free(ctx, dout);
    return h;
}

static void case_fft(parity *P, int n_fft, size_t count)
{
    size_t nb2 = 2 * ((size_t)n_fft / 2 + 1);
    for (int inverse = 0; inverse < 2; inverse++)
        for (int norm = 0; norm < 2; norm++) {
            float scale = norm ? 1.0f / sqrtf((float)n_fft) : inverse ? 1.0f / (float)n_fft : 1.0f;
            size_t ni = count * (inverse ? nb2 : (size_t)n_fft), no = count * (inverse ? (size_t)n_fft : nb2);
            float *in = pr_rand(ni); /* inverse: not Hermitian-consistent, imag of DC/Nyquist must be ignored */
            int rc1, rc2, p1, p2;
            float *want = run_fft(P->ref, inverse, n_fft, count, in, scale, &rc1, &p1);
            float *got = run_fft(P->ctx, inverse, n_fft, count, in, scale, &rc2, &p2);
            char shape[128];
            snprintf(shape, sizeof shape, "n%d x%zu scale %s", n_fft, count,
                     norm ? "n^-1/2" : inverse ? "1/n" : "1");
            CHECK_MSG(rc1 == 0 && rc2 == 0, "%s %s: %s", inverse ? "irfft" : "rfft", shape, sl_lasterr());
            CHECK_MSG(p2, "%s %s: input modified", inverse ? "irfft" : "rfft", shape);
            pr_report(P, inverse ? "irfft" : "rfft", shape, pr_err(got, want, no), TOL_FFT);
            free(in);
            free(want);
            free(got);
        }
}

/* op 0 magnitude, 1 power, 2 apply_mask (3: apply_mask in place) */
static float *run_elem(sl_op_ctx *ctx, int op, size_t n, const float *z, const float *m, int *rc)
{
    size_t no = op >= 2 ? 2 * n : n;
    float *dz = pr_up(ctx, z, 2 * n), *dm = pr_up(ctx, m, n), *dy = op == 3 ? dz : pr_up(ctx, NULL, no);
    *rc = op == 0 ? sl_op_magnitude(ctx, n, dz, dy)
        : op == 1 ? sl_op_power(ctx, n, dz, dy)
                  : sl_op_apply_mask(ctx, n, dz, dm, dy);
    float *h = pr_down(ctx, dy, no, rc);
    if (dy != dz)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dz);
    sl_op_free(ctx, dm);
    return h;
}

static void case_elem(parity *P, size_t n)
{
    static const char *names[] = {"magnitude", "power", "apply_mask", "apply_mask"};
    float *z = pr_rand(2 * n), *m = pr_rand_pos(n);
    for (int op = 0; op < 4; op++) {
        int rc1, rc2;
        float *want = run_elem(P->ref, op, n, z, m, &rc1), *got = run_elem(P->ctx, op, n, z, m, &rc2);
        char shape[128];
        snprintf(shape, sizeof shape, "n%zu%s", n, op == 3 ? " in place" : "");
        CHECK_MSG(rc1 == 0 && rc2 == 0, "%s %s: %s", names[op], shape, sl_lasterr());
        pr_report(P, names[op], shape, pr_err(got, want, op >= 2 ? 2 * n : n), TOL_ELEM);
        free(want);
        free(got);
    }
    free(z);
    free(m);
}

static float *run_median(sl_op_ctx *ctx, int freq, size_t batch, size_t T, size_t F, int k, const float *x, int *rc)
{
    size_t n = batch * T * F;
    float *dx = pr_up(ctx, x, n), *dy = pr_up(ctx, NULL, n);
    *rc = freq ? sl_op_median_freq(ctx, batch, T, F, k, dx, dy) : sl_op_median_time(ctx, batch, T, F, k, dx, dy);
    float *h = pr_down(ctx, dy, n, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    return h;
}

static void case_median(parity *P, size_t batch, size_t T, size_t F, int k)
{
    size_t n = batch * T * F;
    float *x = pr_rand_pos(n);
    for (size_t i = 0; i < n; i += 5)
        x[i] = x[(i * 37) % n]; /* ties */
    if (n > 3)
        x[3] = -x[3]; /* a negative value and a zero: the keys must order them */
    if (n > 4)
        x[4] = 0.0f;
    for (int freq = 0; freq < 2; freq++) {
        int rc1, rc2;
        float *want = run_median(P->ref, freq, batch, T, F, k, x, &rc1);
        float *got = run_median(P->ctx, freq, batch, T, F, k, x, &rc2);
        char shape[128];
        snprintf(shape, sizeof shape, "b%zu T%zu F%zu k%d", batch, T, F, k);
        CHECK_MSG(rc1 == 0 && rc2 == 0, "median %s: %s", shape, sl_lasterr());
        pr_report(P, freq ? "median_freq" : "median_time", shape, pr_err(got, want, n), 0.0);
        free(want);
        free(got);
    }
    free(x);
}

static void run_masks(sl_op_ctx *ctx, size_t n, const float *h, const float *p, float power, float mh, float mp,
                      int in_place, float **oh, float **op, int *rc)
{
    float *dh = pr_up(ctx, h, n), *dp = pr_up(ctx, p, n);
    float *yh = in_place ? dh : pr_up(ctx, NULL, n), *yp = in_place ? dp : pr_up(ctx, NULL, n);
    *rc = sl_op_hpss_masks(ctx, n, dh, dp, power, mh, mp, yh, yp);
    *oh = pr_down(ctx, yh, n, rc);
    *op = pr_down(ctx, yp, n, rc);
    if (!in_place) {
        sl_op_free(ctx, yh);
        sl_op_free(ctx, yp);
    }
    sl_op_free(ctx, dh);
    sl_op_free(ctx, dp);
}

static void case_masks(parity *P, size_t n, float power, float mh, float mp, int in_place)
{
    float *h = pr_rand_pos(n), *p = pr_rand_pos(n);
    for (size_t i = 0; i < n; i++) {
        if (i % 11 == 3)
            h[i] = p[i] = 0.0f; /* both silent */
        if (i % 13 == 5)
            h[i] = 0.0f;
        if (i % 17 == 7)
            p[i] = 1e-39f; /* subnormal */
    }
    float *wh, *wp, *gh, *gp;
    int rc1, rc2;
    run_masks(P->ref, n, h, p, power, mh, mp, 0, &wh, &wp, &rc1);
    run_masks(P->ctx, n, h, p, power, mh, mp, in_place, &gh, &gp, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "n%zu p%g margins %g/%g%s", n, (double)power, (double)mh, (double)mp,
             in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "hpss_masks %s: %s", shape, sl_lasterr());
    pr_report(P, "hpss_masks", shape, fmax(pr_err(gh, wh, n), pr_err(gp, wp, n)), TOL_MASK);
    free(h);
    free(p);
    free(wh);
    free(wp);
    free(gh);
    free(gp);
}

static float *run_ola(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t nf, const float *fr, const float *w,
                      size_t length, int *rc)
{
    size_t n = (size_t)c->n_fft;
    float *dfr = pr_up(ctx, fr, batch * nf * n), *dw = pr_up(ctx, w, n), *dy = pr_up(ctx, NULL, batch * length);
    *rc = sl_op_overlap_add(ctx, c, batch, nf, dfr, dw, length, dy);
    float *h = pr_down(ctx, dy, batch * length, rc);
    sl_op_free(ctx, dfr);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return h;
}

static void case_ola(parity *P, int n_fft, int hop, int center, size_t batch, size_t nf, size_t length)
{
    sl_stft_cfg c = {n_fft, hop, center, SL_PAD_REFLECT, 0};
    size_t n = (size_t)n_fft;
    float *fr = pr_rand(batch * nf * n), *w = malloc(n * sizeof(float));
    sl_window_hann(w, n_fft, n_fft);
    if (!center)
        for (size_t k = 0; k < n; k++)
            w[k] += 0.05f; /* Hann is 0 at sample 0: NOLA fails there without centring */
    int rc1, rc2;
    float *want = run_ola(P->ref, &c, batch, nf, fr, w, length, &rc1);
    float *got = run_ola(P->ctx, &c, batch, nf, fr, w, length, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu frames%zu n%d h%d len%zu c%d", batch, nf, n_fft, hop, length, center);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "overlap_add %s: %s", shape, sl_lasterr());
    pr_report(P, "overlap_add", shape, pr_err(got, want, batch * length), TOL_OLA);
    free(fr);
    free(w);
    free(want);
    free(got);
}

/* NOLA: the CPU fails in the call; CUDA backends at the next sync / download.
 * Either way the caller sees SL_ENUMERIC naming NOLA before it sees data, and
 * the error is reported once. */
static void case_nola(parity *P)
{
    sl_stft_cfg c = {64, 64, 1, SL_PAD_CONSTANT, 0};
    float *fr = pr_rand(3 * 64), *w = malloc(64 * sizeof(float));
    sl_window_hann(w, 64, 64);
    float *dfr = pr_up(P->ctx, fr, 3 * 64), *dw = pr_up(P->ctx, w, 64), *dy = pr_up(P->ctx, NULL, 64);
    int rc = sl_op_overlap_add(P->ctx, &c, 1, 3, dfr, dw, 64, dy);
    if (rc == 0)
        rc = sl_op_sync(P->ctx);
    CHECK_MSG(rc == SL_ENUMERIC && strstr(sl_lasterr(), "NOLA"), "NOLA: %d %s", rc, sl_lasterr());
    CHECK_MSG(sl_op_sync(P->ctx) == 0, "the NOLA error is reported once");
    printf("  %-9s %-15s %-44s %s\n", P->name, "overlap_add", "NOLA (Hann, hop == n_fft)",
           rc == SL_ENUMERIC ? "SL_ENUMERIC ok" : "FAIL");
    P->rows++;
    sl_op_free(P->ctx, dfr);
    sl_op_free(P->ctx, dw);
    sl_op_free(P->ctx, dy);
    free(fr);
    free(w);
}

static float *run_mel(sl_op_ctx *ctx, size_t count, int nb, int n_mels, const float *fb, const float *spec, int *rc)
{
    float *dfb = pr_up(ctx, fb, (size_t)n_mels * nb), *ds = pr_up(ctx, spec, count * nb),
          *dm = pr_up(ctx, NULL, count * n_mels);
    *rc = sl_op_mel(ctx, count, nb, n_mels, dfb, ds, dm);
    float *h = pr_down(ctx, dm, count * n_mels, rc);
    sl_op_free(ctx, dfb);
    sl_op_free(ctx, ds);
    sl_op_free(ctx, dm);
    return h;
}

static void case_mel(parity *P, int sr, int n_fft, int n_mels, size_t count)
{
    int nb = n_fft / 2 + 1;
    float *fb = malloc((size_t)n_mels * nb * sizeof(float));
    CHECK(sl_mel_filterbank(fb, sr, n_fft, n_mels, 0, 0) == 0);
    float *spec = pr_rand_pos(count * nb);
    for (size_t i = 0; i < count * nb; i++)
        spec[i] *= spec[i];
    int rc1, rc2;
    float *want = run_mel(P->ref, count, nb, n_mels, fb, spec, &rc1);
    float *got = run_mel(P->ctx, count, nb, n_mels, fb, spec, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "frames%zu bins%d mels%d", count, nb, n_mels);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "mel %s: %s", shape, sl_lasterr());
    pr_report(P, "mel", shape, pr_err(got, want, count * n_mels), TOL_MEL);
    free(fb);
    free(spec);
    free(want);
    free(got);
}

static float *run_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *x, float top_db, int in_place, int *rc)
{
    float *dx = pr_up(ctx, x, batch * n), *dy = in_place ? dx : pr_up(ctx, NULL, batch * n);
    *rc = sl_op_log_db(ctx, batch, n, dx, 1e-10f, top_db, dy);
    float *h = pr_down(ctx, dy, batch * n, rc);
    if (!in_place)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dx);
    return h;
}

static void case_db(parity *P, size_t batch, size_t n, float top_db, int in_place)
{
    float *x = pr_rand_pos(batch * n);
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < n; i++) {
            float *v = &x[b * n + i];
            *v *= powf(10.0f, (float)b * 2.0f - 2.0f); /* items of very different levels */
            if (i % 7 == 2)
                *v = 1e-13f; /* under amin */
        }
    int rc1, rc2;
    float *want = run_db(P->ref, batch, n, x, top_db, 0, &rc1);
    float *got = run_db(P->ctx, batch, n, x, top_db, in_place, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu n%zu top_db %g%s", batch, n, (double)top_db, in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "log_db %s: %s", shape, sl_lasterr());
    pr_report(P, "log_db", shape, pr_err(got, want, batch * n), TOL_DB);
    free(x);
    free(want);
    free(got);
}

static float *run_pool(sl_op_ctx *ctx, size_t batch, size_t T, size_t F, const float *x, int *rc)
{
    float *dx = pr_up(ctx, x, batch * T * F), *dy = pr_up(ctx, NULL, batch * 4 * F);
    *rc = sl_op_stats_pool(ctx, batch, T, F, dx, dy);
    float *h = pr_down(ctx, dy, batch * 4 * F, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    return h;
}

static void case_pool(parity *P, size_t batch, size_t T, size_t F)
{
    float *x = pr_rand(batch * T * F);
    for (size_t i = 0; i < batch * T * F; i++)
        x[i] = -60.0f + 3.0f * x[i]; /* log-mel like: small spread around a large mean */
    int rc1, rc2;
    float *want = run_pool(P->ref, batch, T, F, x, &rc1), *got = run_pool(P->ctx, batch, T, F, x, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu T%zu F%zu", batch, T, F);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "stats_pool %s: %s", shape, sl_lasterr());
    pr_report(P, "stats_pool", shape, pr_err(got, want, batch * 4 * F), TOL_POOL);
    free(x);
    free(want);
    free(got);
}

/* Tracks of different lengths in one batch: frames of every track into one
 * buffer (per-track sl_op_frame calls at offsets), one rfft over all of them,
 * magnitude, per-track medians, masks, apply, one irfft over all, per-track
 * overlap_add. Each stage's output is compared with the CPU backend's. */
typedef struct {
    float *frames, *spec, *mag, *mt, *mf, *mh, *mp, *y;
} pr_stages;

static void run_tracks(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t n_tracks, const size_t *len, float *const *x,
                       const float *w, size_t total_frames, size_t total_len, pr_stages *out, int *rc)
{
    const size_t n = (size_t)c->n_fft, nb = n / 2 + 1;
    float *dw = pr_up(ctx, w, n), *dx[8] = {NULL};
    float *fr = pr_up(ctx, NULL, total_frames * n), *sp = pr_up(ctx, NULL, total_frames * nb * 2);
    float *mag = pr_up(ctx, NULL, total_frames * nb), *mt = pr_up(ctx, NULL, total_frames * nb),
          *mf = pr_up(ctx, NULL, total_frames * nb), *y = pr_up(ctx, NULL, total_len);
    *rc = 0;
    size_t f0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        dx[t] = pr_up(ctx, x[t], len[t]);
        sl_stft_cfg ct = *c; /* as the models do: too short to reflect -> zero padding */
        if (len[t] <= n / 2)
            ct.pad = SL_PAD_CONSTANT;
        size_t nf = sl_stft_n_frames(&ct, len[t]);
        *rc = sl_op_frame(ctx, &ct, dx[t], 1, len[t], 0, nf, dw, fr + f0 * n);
        f0 += nf;
    }
    if (!*rc)
        *rc = sl_op_rfft(ctx, c->n_fft, total_frames, fr, sp, 1.0f);
    if (!*rc)
        *rc = sl_op_magnitude(ctx, total_frames * nb, sp, mag);
    f0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        size_t nf = sl_stft_n_frames(c, len[t]);
        *rc = sl_op_median_time(ctx, 1, nf, nb, 17, mag + f0 * nb, mt + f0 * nb);
        if (!*rc)
            *rc = sl_op_median_freq(ctx, 1, nf, nb, 9, mag + f0 * nb, mf + f0 * nb);
        f0 += nf;
    }
    out->mt = pr_down(ctx, mt, total_frames * nb, rc);
    out->mf = pr_down(ctx, mf, total_frames * nb, rc);
    if (!*rc) /* masks over the medians in place, then the harmonic part back to samples */
        *rc = sl_op_hpss_masks(ctx, total_frames * nb, mt, mf, 2.0f, 2.0f, 2.0f, mt, mf);
    if (!*rc)
        *rc = sl_op_apply_mask(ctx, total_frames * nb, sp, mt, sp);
    out->spec = pr_down(ctx, sp, total_frames * nb * 2, rc);
    if (!*rc)
        *rc = sl_op_irfft(ctx, c->n_fft, total_frames, sp, fr, 1.0f / (float)n);
    f0 = 0;
    size_t y0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        size_t nf = sl_stft_n_frames(c, len[t]);
        *rc = sl_op_overlap_add(ctx, c, 1, nf, fr + f0 * n, dw, len[t], y + y0);
        f0 += nf;
        y0 += len[t];
    }
    out->frames = pr_down(ctx, fr, total_frames * n, rc);
    out->mag = pr_down(ctx, mag, total_frames * nb, rc);
    out->mh = pr_down(ctx, mt, total_frames * nb, rc);
    out->mp = pr_down(ctx, mf, total_frames * nb, rc);
    out->y = pr_down(ctx, y, total_len, rc);
    for (size_t t = 0; t < n_tracks; t++)
        sl_op_free(ctx, dx[t]);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, fr);
    sl_op_free(ctx, sp);
    sl_op_free(ctx, mag);
    sl_op_free(ctx, mt);
    sl_op_free(ctx, mf);
    sl_op_free(ctx, y);
}

static void case_tracks(parity *P, int n_fft, int hop, const size_t *len, size_t n_tracks)
{
    sl_stft_cfg c = {n_fft, hop, 1, SL_PAD_REFLECT, 0};
    const size_t n = (size_t)n_fft, nb = n / 2 + 1;
    float *x[8], *w = malloc(n * sizeof(float));
    sl_window_hann(w, n_fft, n_fft);
    size_t total_frames = 0, total_len = 0;
    char shape[128];
    int off = snprintf(shape, sizeof shape, "n%d h%d tracks", n_fft, hop);
    for (size_t t = 0; t < n_tracks; t++) {
        x[t] = pr_rand(len[t]);
        total_frames += sl_stft_n_frames(&c, len[t]);
        total_len += len[t];
        off += snprintf(shape + off, sizeof shape - (size_t)off, "%s%zu", t ? "," : " ", len[t]);
    }
    pr_stages a, b;
    int rc1, rc2;
    run_tracks(P->ref, &c, n_tracks, len, x, w, total_frames, total_len, &a, &rc1);
    run_tracks(P->ctx, &c, n_tracks, len, x, w, total_frames, total_len, &b, &rc2);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "tracks %s: %d %d %s", shape, rc1, rc2, sl_lasterr());
    /* Each stage is fed by the backend's own previous stage, so errors may
     * compound; the medians are exact selections of slightly different inputs. */
    pr_report(P, "[tracks]mag", shape, pr_err(b.mag, a.mag, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]med_t", shape, pr_err(b.mt, a.mt, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]med_f", shape, pr_err(b.mf, a.mf, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]masks", shape, fmax(pr_err(b.mh, a.mh, total_frames * nb), pr_err(b.mp, a.mp, total_frames * nb)),
              1e-4);
    pr_report(P, "[tracks]istft", shape, pr_err(b.y, a.y, total_len), 1e-4);
    for (size_t t = 0; t < n_tracks; t++)
        free(x[t]);
    free(w);
    float **pa = (float **)&a, **pb = (float **)&b;
    for (size_t i = 0; i < sizeof a / sizeof(float *); i++) {
        free(pa[i]);
        free(pb[i]);
    }
}

#endif
