/* The vector types and loads / stores of cpu_simd_each.h, for one instruction set
 * (WG_VW floats per vector, WG_SFX(name) the set's name). Not a header of its own:
 * no include guard, on purpose. */

#if WG_VW != 8 && WG_VW != 16
#error "WG_VW must be 8 or 16"
#endif

typedef float WG_SFX(vf) __attribute__((vector_size(4 * WG_VW)));
typedef int WG_SFX(vi) __attribute__((vector_size(4 * WG_VW)));

static inline WG_SFX(vf) WG_SFX(ld)(const float *p)
{
    WG_SFX(vf) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void WG_SFX(st)(float *p, WG_SFX(vf) v) { memcpy(p, &v, sizeof v); }
