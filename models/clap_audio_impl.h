/* Private to models/clap_audio*.c: the HTSAT audio tower of LAION-CLAP as
 * loaded (models/clap_audio_load.c) and run (models/clap_audio.c). */
#ifndef SL_CLAP_AUDIO_IMPL_H
#define SL_CLAP_AUDIO_IMPL_H

#include <stdint.h>

#include "model_impl.h"

#define CLAP_MAX_STAGES 8

/* One Swin block on an H x W grid of tokens of width dim. */
typedef struct {
    int dim, heads, ws, shift, hidden;
    size_t n_win, n_tok;  /* windows and tokens per window (ws*ws) */
    /* backend memory */
    float *n1g, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2g, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    float *bias;          /* [n_win or 1][heads][n_tok][n_tok]: relative position bias (+ shift mask) */
    int32_t *idx;         /* gather from the previous block's row order into this one's; NULL: same order */
    /* host: the grid position (raster) held by each row in this block's order */
    int32_t *pos;
} clap_block;

typedef struct {
    int H, W, dim, depth;
    clap_block *blk;
    /* patch merging (NULL in the last stage): 2x2 gather, LayerNorm(4 dim), Linear(4 dim -> 2 dim) */
    int32_t *m_idx;
    float *m_g, *m_b, *m_w;
} clap_stage;

typedef struct {
    /* front end */
    sl_stft_cfg stft;
    int sr, n_mels, spec, patch, grid, embed, n_stages, latent, joint;
    size_t clip, frames, target_t;
    float *window, *fb, *bn0_add, *bn0_mul;
    int32_t *pe_idx;      /* [grid*grid*patch*patch][4]: bicubic taps of each patch value */
    float *pe_tap;        /* their weights */
    float *pe_w, *pe_b, *pe_ng, *pe_nb; /* patch conv as [embed][patch*patch], its bias, its LayerNorm */
    clap_stage st[CLAP_MAX_STAGES];
    float *norm_g, *norm_b;             /* final LayerNorm */
    float *p1_w, *p1_b, *p2_w, *p2_b;   /* audio_projection.0 / .2 */
    /* working memory */
    sl_model_ws ws;
    float *host_wave;     /* [clip] host */
} clap_state;

/* Reads the weights file into st (backend memory on m->ctx). 0 or a negative code with
 * "embedding model clap: FILE: reason" in sl_lasterr(). */
int sl_clap_audio_load(sl_emb_model *m, clap_state *st, const char *path);
/* Frees what sl_clap_audio_load allocated (st itself stays). */
void sl_clap_audio_unload(sl_emb_model *m, clap_state *st);
/* The bicubic (torch, align_corners=True, A = -0.75) taps and weights of every value of the
 * patch matrix [grid*grid][patch*patch] (image = 0), or of the image [spec][spec] (image = 1),
 * read from the log-mel [frames][n_mels]. idx/w: caller-allocated, 4 per value. */
void sl_clap_audio_taps(const clap_state *st, int image, int32_t *idx, float *w);

#endif
