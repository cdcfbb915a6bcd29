/* C view of the CUDA device probe (kernels/cuda/device.cu). Compiled into
 * stemline_cuda only where nvcc exists; callers guard with SL_HAVE_CUDA. */
#ifndef SL_CUDA_PROBE_H
#define SL_CUDA_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int count;            /* devices the runtime sees */
    int device;           /* the one chosen */
    char name[128];       /* cudaDeviceProp.name */
    int cc_major, cc_minor;
    size_t total_mem;     /* bytes */
    int runtime_version;  /* cudaRuntimeGetVersion */
    int driver_version;   /* cudaDriverGetVersion (0 when no driver) */
} sl_cuda_device_info;

/* Asks the CUDA runtime for a usable device; fills *info. Returns 0, SL_ENODEVICE
 * (no driver or no device) or SL_EDEVICE (other runtime error); on failure msg
 * (caller-owned, msg_size bytes) names the failing call and the CUDA error. */
int sl_cuda_probe(sl_cuda_device_info *info, char *msg, size_t msg_size);
/* Same for device ordinal want (0..count-1); an ordinal past the last device is
 * SL_ENODEVICE naming how many there are. */
int sl_cuda_probe_device(sl_cuda_device_info *info, int want, char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
