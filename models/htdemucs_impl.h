/* Private to models/htdemucs*.c: the state of an HT-Demucs v4 model or bag
 * (loaded by htdemucs_load.c, run by htdemucs.c). All weight pointers are
 * backend memory; a NULL norm means the layer has none (identity). */
#ifndef SL_HTDEMUCS_IMPL_H
#define SL_HTDEMUCS_IMPL_H

#include "model_impl.h"

#define HD_MAX_DEPTH 8
#define HD_MAX_DCONV 4
#define HD_MAX_XLAYERS 16
#define HD_MAX_MODELS 8

typedef struct {
    float *w, *b;
    int c_in, c_out, k;
} hd_conv;

typedef struct {
    float *g, *b; /* GroupNorm weight / bias; g NULL: no norm */
} hd_gn;

typedef struct {
    hd_conv c1, c2;
    hd_gn n1, n2; /* n2 carries the LayerScale folded into its first half */
    int dil;
} hd_dlayer;

/* An encoder (HEncLayer) or decoder (HDecLayer) layer of either branch. */
typedef struct {
    int freq;            /* 1: frequency branch ([K,1] convolutions over bins) */
    hd_conv conv;        /* encoder: the strided conv; decoder: the transposed conv */
    hd_gn norm_a;        /* encoder norm1 (after conv); decoder norm1 (after rewrite) */
    hd_conv rewrite;     /* k 1 (or 1+2*context): conv1d / conv2d; c_out = 2 * channels */
    hd_gn norm_b;        /* encoder norm2 (after rewrite); decoder norm2 (after conv_tr) */
    int n_dconv;         /* DConv layers, 0: none */
    hd_dlayer dconv[HD_MAX_DCONV];
    int last;            /* decoder: the outermost layer (no GELU) */
} hd_layer;

typedef struct {
    int cross;           /* 1: CrossTransformerEncoderLayer */
    float *n1g, *n1b, *n2g, *n2b, *n3g, *n3b; /* n3: cross layers' feed-forward norm */
    float *wqkv, *bqkv;  /* [3C][C], [3C]; cross layers: wqkv [C][C] (queries) */
    float *wkv;          /* cross layers: the key / value projections [2C][C]; else NULL */
    float *wo, *bo;      /* out_proj with gamma_1 folded */
    float *w1, *b1, *w2, *b2; /* feed-forward, w2 / b2 with gamma_2 folded */
    float *nog, *nob;    /* norm_out (GroupNorm(1, C) over all tokens); NULL: none */
} hd_xlayer;

typedef struct {
    hd_layer enc[HD_MAX_DEPTH], tenc[HD_MAX_DEPTH];
    hd_layer dec[HD_MAX_DEPTH], tdec[HD_MAX_DEPTH]; /* in the package's order: [0] innermost */
    float *emb;          /* frequency embedding added after encoder 0: [C0][F1][T] expanded over frames */
    hd_conv up, down, up_t, down_t; /* bottom_channels: 1x1 convs around the transformer; w NULL: none */
    float *nin_g, *nin_b, *nint_g, *nint_b;
    hd_xlayer xl[HD_MAX_XLAYERS], xlt[HD_MAX_XLAYERS];
} hd_net;

typedef struct {
    /* hyper-parameters (metadata, checked against the tensor shapes) */
    int C, S, channels, growth, nfft, depth, kernel, stride, context, context_enc;
    int norm_starts, norm_groups, dconv_mode, dconv_depth, bottom, t_layers, t_heads, sr;
    int t_norm_in, t_norm_out, t_layer_scale, t_gelu, t_cross_first, rewrite;
    double freq_emb, emb_scale, dconv_comp, t_hidden, t_max_period, t_pos_w;
    long seg_num, seg_den;
    size_t L;            /* segment samples: int(segment * samplerate) */
    /* geometry of one segment */
    int hl, F, T, pad;   /* hop, bins (nfft/2), frames ceil(L/hl), _spec padding (hl/2*3) */
    int fr[HD_MAX_DEPTH + 1];   /* bins at the input of freq layer i (fr[depth]: transformer) */
    size_t tl[HD_MAX_DEPTH + 1]; /* samples at the input of time layer i */
    int ch[HD_MAX_DEPTH + 1];   /* channels at the output of encoder i-1 (ch[0]: unused) */
    int Ct;              /* transformer width (bottom_channels or ch[depth]) */
    int n_models;
    float weights[HD_MAX_MODELS][SL_MAX_SOURCES];
    char names[SL_MAX_SOURCES][32];
    hd_net net[HD_MAX_MODELS];
    float *window;       /* hann(nfft), backend memory */
    float *pos2d, *pos1d; /* positional embeddings times t_weight_pos_embed: [T*F'][Ct], [T2][Ct] */
    int overlap_pct_unused;
    /* the weights file, kept mapped while weights point into it (sl_model_wrap: the tensors
     * used as they are stored, read in place on the cpu backend) */
    struct sl_st_file *map;
    sl_model_inplace inplace;
} hd_state;

/* Loads and checks the weights file (htdemucs_load.c): every tensor of the file used,
 * every expected one present with its shape; errors name the file and the key
 * (SL_EFORMAT). Frees nothing on error (hd_free does). */
int hd_load(sl_op_ctx *ctx, hd_state *st, const char *path);
void hd_free(sl_op_ctx *ctx, hd_state *st);

#endif
