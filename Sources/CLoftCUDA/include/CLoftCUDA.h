#ifndef CLOFT_CUDA_H
#define CLOFT_CUDA_H
/*
 * Loft's own declarations of the few CUDA driver, NVRTC and cuBLASLt entry
 * points the CUDA backend calls, as function pointers filled in at run time
 * by dlopen/dlsym. No CUDA header is needed to build Loft, and a binary built
 * here runs (on the CPU) where no CUDA library exists at all.
 *
 * Types are reduced to what crosses the boundary: handles are opaque
 * pointers, device pointers are 64-bit integers, enums are ints whose values
 * come from NVIDIA's published documentation.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CUDA driver API ---- */
typedef int loft_cu_result;            /* CUresult: 0 = CUDA_SUCCESS */
typedef int loft_cu_device;            /* CUdevice */
typedef void *loft_cu_context;         /* CUcontext */
typedef void *loft_cu_module;          /* CUmodule */
typedef void *loft_cu_function;        /* CUfunction */
typedef void *loft_cu_stream;          /* CUstream (NULL = the legacy default stream) */
typedef unsigned long long loft_cu_deviceptr;

enum {
    LOFT_CUDA_SUCCESS = 0,
    LOFT_CUDA_ERROR_NOT_INITIALIZED = 3,
    LOFT_CUDA_ERROR_INSUFFICIENT_DRIVER = 35,
    LOFT_CUDA_ERROR_NO_DEVICE = 100,
    LOFT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    LOFT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    LOFT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
};

typedef struct {
    loft_cu_result (*cuInit)(unsigned int flags);
    loft_cu_result (*cuDriverGetVersion)(int *version);
    loft_cu_result (*cuDeviceGetCount)(int *count);
    loft_cu_result (*cuDeviceGet)(loft_cu_device *device, int ordinal);
    loft_cu_result (*cuDeviceGetName)(char *name, int length, loft_cu_device device);
    loft_cu_result (*cuDeviceGetAttribute)(int *value, int attribute, loft_cu_device device);
    loft_cu_result (*cuDeviceTotalMem)(size_t *bytes, loft_cu_device device);           /* _v2 */
    loft_cu_result (*cuDevicePrimaryCtxRetain)(loft_cu_context *context, loft_cu_device device);
    loft_cu_result (*cuCtxSetCurrent)(loft_cu_context context);
    loft_cu_result (*cuCtxSynchronize)(void);
    loft_cu_result (*cuMemAlloc)(loft_cu_deviceptr *pointer, size_t bytes);             /* _v2 */
    loft_cu_result (*cuMemFree)(loft_cu_deviceptr pointer);                             /* _v2 */
    loft_cu_result (*cuMemGetInfo)(size_t *free, size_t *total);                        /* _v2 */
    loft_cu_result (*cuMemcpyHtoD)(loft_cu_deviceptr dst, const void *src, size_t bytes); /* _v2 */
    loft_cu_result (*cuMemcpyDtoH)(void *dst, loft_cu_deviceptr src, size_t bytes);     /* _v2 */
    loft_cu_result (*cuMemcpyDtoD)(loft_cu_deviceptr dst, loft_cu_deviceptr src, size_t bytes); /* _v2 */
    loft_cu_result (*cuMemsetD8)(loft_cu_deviceptr dst, unsigned char value, size_t count);    /* _v2 */
    loft_cu_result (*cuModuleLoadData)(loft_cu_module *module, const void *image);
    loft_cu_result (*cuModuleGetFunction)(loft_cu_function *function, loft_cu_module module, const char *name);
    loft_cu_result (*cuLaunchKernel)(loft_cu_function f, unsigned int gridX, unsigned int gridY, unsigned int gridZ,
                                     unsigned int blockX, unsigned int blockY, unsigned int blockZ,
                                     unsigned int sharedBytes, loft_cu_stream stream, void **params, void **extra);
    loft_cu_result (*cuGetErrorName)(loft_cu_result error, const char **name);
    loft_cu_result (*cuGetErrorString)(loft_cu_result error, const char **text);
} loft_cuda_driver;

/* ---- NVRTC ---- */
typedef int loft_nvrtc_result;         /* nvrtcResult: 0 = NVRTC_SUCCESS */
typedef void *loft_nvrtc_program;

typedef struct {
    loft_nvrtc_result (*nvrtcVersion)(int *major, int *minor);
    loft_nvrtc_result (*nvrtcGetNumSupportedArchs)(int *count);
    loft_nvrtc_result (*nvrtcGetSupportedArchs)(int *archs);
    loft_nvrtc_result (*nvrtcCreateProgram)(loft_nvrtc_program *program, const char *source, const char *name,
                                            int headerCount, const char *const *headers, const char *const *includeNames);
    loft_nvrtc_result (*nvrtcDestroyProgram)(loft_nvrtc_program *program);
    loft_nvrtc_result (*nvrtcCompileProgram)(loft_nvrtc_program program, int optionCount, const char *const *options);
    loft_nvrtc_result (*nvrtcGetProgramLogSize)(loft_nvrtc_program program, size_t *size);
    loft_nvrtc_result (*nvrtcGetProgramLog)(loft_nvrtc_program program, char *log);
    loft_nvrtc_result (*nvrtcGetPTXSize)(loft_nvrtc_program program, size_t *size);
    loft_nvrtc_result (*nvrtcGetPTX)(loft_nvrtc_program program, char *ptx);
    loft_nvrtc_result (*nvrtcGetCUBINSize)(loft_nvrtc_program program, size_t *size);   /* optional (NVRTC ≥ 11.1) */
    loft_nvrtc_result (*nvrtcGetCUBIN)(loft_nvrtc_program program, char *cubin);        /* optional */
    const char *(*nvrtcGetErrorString)(loft_nvrtc_result result);
} loft_nvrtc;

/* ---- cuBLASLt ---- */
typedef int loft_cublas_status;        /* cublasStatus_t: 0 = CUBLAS_STATUS_SUCCESS */
typedef void *loft_cublaslt_handle;
typedef void *loft_cublaslt_matmul_desc;
typedef void *loft_cublaslt_layout;
typedef void *loft_cublaslt_preference;

/* cublasLtMatmulAlgo_t and cublasLtMatmulHeuristicResult_t, laid out as documented. */
typedef struct { uint64_t data[8]; } loft_cublaslt_algo;
typedef struct {
    loft_cublaslt_algo algo;
    size_t workspaceSize;
    loft_cublas_status state;
    float wavesCount;
    int reserved[4];
} loft_cublaslt_heuristic;

enum {
    LOFT_CUDA_R_32F = 0,               /* cudaDataType_t */
    LOFT_CUDA_R_16F = 2,
    LOFT_CUDA_R_16BF = 14,
    LOFT_CUBLAS_COMPUTE_32F = 68,      /* cublasComputeType_t */
    LOFT_CUBLAS_OP_N = 0,              /* cublasOperation_t */
    LOFT_CUBLAS_OP_T = 1,
    LOFT_CUBLASLT_MATMUL_DESC_TRANSA = 3,            /* cublasLtMatmulDescAttributes_t */
    LOFT_CUBLASLT_MATMUL_DESC_TRANSB = 4,
    LOFT_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, /* cublasLtMatmulPreferenceAttributes_t */
    LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

typedef struct {
    loft_cublas_status (*cublasLtCreate)(loft_cublaslt_handle *handle);
    loft_cublas_status (*cublasLtDestroy)(loft_cublaslt_handle handle);
    size_t (*cublasLtGetVersion)(void);
    loft_cublas_status (*cublasLtMatmulDescCreate)(loft_cublaslt_matmul_desc *desc, int computeType, int scaleType);
    loft_cublas_status (*cublasLtMatmulDescDestroy)(loft_cublaslt_matmul_desc desc);
    loft_cublas_status (*cublasLtMatmulDescSetAttribute)(loft_cublaslt_matmul_desc desc, int attribute,
                                                        const void *value, size_t bytes);
    loft_cublas_status (*cublasLtMatrixLayoutCreate)(loft_cublaslt_layout *layout, int type, uint64_t rows,
                                                    uint64_t cols, int64_t ld);
    loft_cublas_status (*cublasLtMatrixLayoutDestroy)(loft_cublaslt_layout layout);
    loft_cublas_status (*cublasLtMatmulPreferenceCreate)(loft_cublaslt_preference *preference);
    loft_cublas_status (*cublasLtMatmulPreferenceDestroy)(loft_cublaslt_preference preference);
    loft_cublas_status (*cublasLtMatmulPreferenceSetAttribute)(loft_cublaslt_preference preference, int attribute,
                                                              const void *value, size_t bytes);
    loft_cublas_status (*cublasLtMatmulAlgoGetHeuristic)(loft_cublaslt_handle handle, loft_cublaslt_matmul_desc desc,
                                                        loft_cublaslt_layout a, loft_cublaslt_layout b,
                                                        loft_cublaslt_layout c, loft_cublaslt_layout d,
                                                        loft_cublaslt_preference preference, int requested,
                                                        loft_cublaslt_heuristic *results, int *returned);
    loft_cublas_status (*cublasLtMatmul)(loft_cublaslt_handle handle, loft_cublaslt_matmul_desc desc,
                                         const void *alpha, const void *a, loft_cublaslt_layout aLayout,
                                         const void *b, loft_cublaslt_layout bLayout, const void *beta,
                                         const void *c, loft_cublaslt_layout cLayout, void *d,
                                         loft_cublaslt_layout dLayout, const loft_cublaslt_algo *algo,
                                         void *workspace, size_t workspaceBytes, loft_cu_stream stream);
} loft_cublaslt;

/* ---- the loader ---- */
/*
 * Each loader opens its library (searching LOFT_CUDA_LIBS, the dynamic
 * linker's path, the CUDA toolkit's usual folders and pip's nvidia/<x>/lib
 * folders), resolves every symbol above, and returns 0 on success. On failure
 * it returns nonzero and writes what was missing into `error` (a message for
 * people). `path` receives the file that was opened. Nothing is cached here:
 * the Swift side loads each library once.
 */
int loft_cuda_load_driver(loft_cuda_driver *out, char *path, size_t pathBytes, char *error, size_t errorBytes);
int loft_cuda_load_nvrtc(loft_nvrtc *out, char *path, size_t pathBytes, char *error, size_t errorBytes);
int loft_cuda_load_cublaslt(loft_cublaslt *out, char *path, size_t pathBytes, char *error, size_t errorBytes);

#ifdef __cplusplus
}
#endif
#endif
