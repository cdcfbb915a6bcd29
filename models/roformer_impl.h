/* Private to models/roformer*.c: the state of a BS-RoFormer / Mel-Band
 * RoFormer model (loaded by roformer_load.c, run by roformer.c). */
#ifndef SL_ROFORMER_IMPL_H
#define SL_ROFORMER_IMPL_H

#include <stdint.h>

#include "model_impl.h"

#define RF_MAX_STEMS 8
#define RF_MAX_BANDS 1024
#define RF_MAX_MLP 8

typedef enum { RF_BS = 0, RF_MEL = 1 } rf_arch;

/* One attention + feed-forward layer of a transformer (backend memory). */
typedef struct {
    float *attn_g, *wqkv, *wgate, *bgate, *wout; /* wgate / bgate NULL: ungated attention */
    float *ff_g, *w1, *b1, *w2, *b2;
} rf_layer;

typedef struct {
    rf_arch arch;
    /* hyper-parameters (weights metadata, checked against the tensor shapes) */
    int dim, depth, S, N, tdepth, fdepth, heads, dim_head, ff_hidden;
    int n_fft, hop, win, normalized, zero_dc, sample_rate, chunk_size, num_overlap;
    int num_bands;     /* Mel: mel bands; BS: len(freqs_per_bands) */
    int K;             /* bands */
    int mlp_layers;    /* linear layers per mask estimator MLP */
    int mlp_hidden;
    int n_feat;        /* complex features per frame (sum of the bands' bins x channels) */
    int max_din;       /* largest band input (floats) */
    int din[RF_MAX_BANDS], off[RF_MAX_BANDS]; /* band k: floats in, offset in a feature row (floats) */
    int instrumental;  /* 1: an extra source = mix - stem 0 (one-stem models) */
    char names[RF_MAX_STEMS + 1][32];
    sl_stft_cfg stft;
    float inv_freq[2][64]; /* rotary inverse frequencies: time, frequency transformers */
    /* backend memory */
    float *window;
    int32_t *idx, *inv_off, *inv_idx;
    float **band_g, **band_w, **band_b;        /* [K] */
    rf_layer *layers;                          /* depth x (tdepth + fdepth) */
    float **tnorm;                             /* Mel: [depth*2] transformer output norms */
    float *final_g;                            /* BS: the final RMSNorm */
    float **mlp_w, **mlp_b;                    /* [N][K][mlp_layers] */
} rf_state;

/* Loads and checks the weights file for arch (roformer_load.c); frees nothing on error
 * (rf_free does). */
int rf_load(sl_op_ctx *ctx, rf_state *st, const char *path, rf_arch arch);
void rf_free(sl_op_ctx *ctx, rf_state *st);

#endif
