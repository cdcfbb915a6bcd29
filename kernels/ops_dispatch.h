/* Private to kernels/ops*.c: the error of a failed argument check and the
 * dispatch of a checked op to the context's backend. */
#ifndef SL_KERNELS_OPS_DISPATCH_H
#define SL_KERNELS_OPS_DISPATCH_H

#include "../common/sl_error.h"
#include "backend.h"

/* The backend's per-call hook (backend.h): the context's device made current
 * for the calling thread. */
static inline int enter(sl_op_ctx *ctx) { return ctx->be->enter ? ctx->be->enter(ctx) : 0; }

static inline int bad(const char *op, const char *why) { return sl_seterr(SL_EINVAL, "op %s: %s", op, why); }

#define DISPATCH(op, fn, ...)                                                                     \
    do {                                                                                          \
        if (!ctx->be->fn)                                                                         \
            return sl_seterr(SL_EUNSUPPORTED, "op '%s' is not implemented by backend %s",        \
                             sl_op_name(op), ctx->be->name);                                      \
        if (ctx->skip_ops) /* replayed from a CUDA graph (sl_op_pipe_item_begin) */              \
            return 0;                                                                             \
        int rc_ = enter(ctx);                                                                     \
        return rc_ ? rc_ : ctx->be->fn(ctx, __VA_ARGS__);                                         \
    } while (0)

#endif
