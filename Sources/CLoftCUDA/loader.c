/*
 * Finds and opens the CUDA driver, NVRTC and cuBLASLt at run time. The
 * search order is: LOFT_CUDA_LIBS (folders or files, ':'-separated), the
 * dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache), the CUDA
 * toolkit's usual folders, Loft's NVRTC cache (~/.cache/loft/nvrtc, where
 * tools/check-kernels.sh installs the pip wheel), and the nvidia/<x>/lib
 * folders of pip-installed wheels in the usual Python prefixes.
 */
#define _GNU_SOURCE
#include "CLoftCUDA.h"

#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOFT_MAX_DIRS 256

typedef struct {
    char *items[LOFT_MAX_DIRS];
    int count;
} loft_dir_list;

static void add_dir(loft_dir_list *list, const char *dir) {
    if (list->count >= LOFT_MAX_DIRS || dir == NULL) return;
    for (int i = 0; i < list->count; i++) if (strcmp(list->items[i], dir) == 0) return;
    list->items[list->count++] = strdup(dir);
}

static void add_glob(loft_dir_list *list, const char *pattern) {
    glob_t g;
    if (glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) add_dir(list, g.gl_pathv[i]);
    }
    globfree(&g);
}

static void add_python_prefix(loft_dir_list *list, const char *prefix) {
    if (prefix == NULL || prefix[0] == 0) return;
    char pattern[1024];
    snprintf(pattern, sizeof pattern, "%s/lib/python3*/site-packages/nvidia/*/lib", prefix);
    add_glob(list, pattern);
    snprintf(pattern, sizeof pattern, "%s/lib/python3*/dist-packages/nvidia/*/lib", prefix);
    add_glob(list, pattern);
    snprintf(pattern, sizeof pattern, "%s/local/lib/python3*/dist-packages/nvidia/*/lib", prefix);
    add_glob(list, pattern);
}

static void free_dirs(loft_dir_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    list->count = 0;
}

/* Folders to search after LOFT_CUDA_LIBS and the dynamic linker. */
static void default_dirs(loft_dir_list *list) {
    const char *fixed[] = {
        "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda/targets/sbsa-linux/lib",
        "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64", "/usr/lib/wsl/lib",
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) add_dir(list, fixed[i]);
    add_glob(list, "/usr/local/cuda-*/lib64");
    const char *home = getenv("HOME");
    char pattern[1024];
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0]) {
        snprintf(pattern, sizeof pattern, "%s/loft/nvrtc/nvidia/*/lib", xdg);
        add_glob(list, pattern);
    }
    if (home) {
        snprintf(pattern, sizeof pattern, "%s/.cache/loft/nvrtc/nvidia/*/lib", home);
        add_glob(list, pattern);
    }
    add_python_prefix(list, getenv("VIRTUAL_ENV"));
    add_python_prefix(list, getenv("CONDA_PREFIX"));
    if (home) {
        snprintf(pattern, sizeof pattern, "%s/.local", home);
        add_python_prefix(list, pattern);
    }
    add_python_prefix(list, "/usr/local");
    add_python_prefix(list, "/usr");
    add_python_prefix(list, "/opt/conda");
    glob_t g;
    if (glob("/opt/*/.venv", GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) add_python_prefix(list, g.gl_pathv[i]);
    }
    globfree(&g);
}

/* NVRTC loads its builtins library by name; where the folder is on no search
 * path (a pip wheel, LOFT_CUDA_LIBS), open it from the same folder first. */
static void preload_nvrtc_builtins(const char *nvrtcPath) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", nvrtcPath);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) return;
    *slash = 0;
    char pattern[1100];
    snprintf(pattern, sizeof pattern, "%s/libnvrtc-builtins.so.*", dir);
    glob_t g;
    if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (strstr(g.gl_pathv[i], ".alt.") != NULL) continue;
            dlopen(g.gl_pathv[i], RTLD_NOW | RTLD_GLOBAL);
        }
    }
    globfree(&g);
}

static void *try_open(const char *candidate, char *path, size_t pathBytes, int isNVRTC) {
    if (isNVRTC && strchr(candidate, '/') != NULL) preload_nvrtc_builtins(candidate);
    void *h = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL);
    if (h != NULL && path != NULL && pathBytes > 0) {
        snprintf(path, pathBytes, "%s", candidate);
        /* For a bare name, report the file the dynamic linker chose. */
        Dl_info info;
        void *sym = dlsym(h, isNVRTC ? "nvrtcVersion" : "cuInit");
        if (sym == NULL) sym = dlsym(h, "cublasLtCreate");
        if (sym != NULL && dladdr(sym, &info) && info.dli_fname) snprintf(path, pathBytes, "%s", info.dli_fname);
    }
    return h;
}

/* Opens the first of `names` found along the search order; NULL if none. */
static void *open_library(const char *const *names, int isNVRTC, char *path, size_t pathBytes) {
    const char *env = getenv("LOFT_CUDA_LIBS");
    char candidate[2048];
    if (env && env[0]) {
        char *copy = strdup(env);
        char *save = NULL;
        for (char *part = strtok_r(copy, ":", &save); part; part = strtok_r(NULL, ":", &save)) {
            for (int n = 0; names[n]; n++) {
                const char *base = strrchr(part, '/');
                base = base ? base + 1 : part;
                /* A file named in the variable is taken when it is one of ours. */
                if (strncmp(base, names[n], strlen(names[n])) == 0) {
                    void *h = try_open(part, path, pathBytes, isNVRTC);
                    if (h) { free(copy); return h; }
                }
                snprintf(candidate, sizeof candidate, "%s/%s", part, names[n]);
                void *h = try_open(candidate, path, pathBytes, isNVRTC);
                if (h) { free(copy); return h; }
            }
        }
        free(copy);
    }
    for (int n = 0; names[n]; n++) {
        void *h = try_open(names[n], path, pathBytes, isNVRTC);
        if (h) return h;
    }
    loft_dir_list dirs = {{0}, 0};
    default_dirs(&dirs);
    void *found = NULL;
    for (int n = 0; names[n] && !found; n++) {
        for (int d = 0; d < dirs.count && !found; d++) {
            snprintf(candidate, sizeof candidate, "%s/%s", dirs.items[d], names[n]);
            found = try_open(candidate, path, pathBytes, isNVRTC);
        }
    }
    free_dirs(&dirs);
    return found;
}

/* Resolves `name` into *slot; records the first missing symbol. */
static int resolve(void *handle, const char *name, void **slot, int required, char *error, size_t errorBytes,
                   const char *path) {
    *slot = dlsym(handle, name);
    if (*slot == NULL && required) {
        snprintf(error, errorBytes, "%s has no symbol %s: the library is too old or not the NVIDIA one; install a newer CUDA (12.x or 13.x)", path, name);
        return 1;
    }
    return 0;
}

#define RESOLVE(field, symbol) failed |= resolve(h, symbol, (void **)&out->field, 1, error, errorBytes, path)
#define RESOLVE_OPTIONAL(field, symbol) resolve(h, symbol, (void **)&out->field, 0, error, errorBytes, path)

int loft_cuda_load_driver(loft_cuda_driver *out, char *path, size_t pathBytes, char *error, size_t errorBytes) {
    memset(out, 0, sizeof *out);
    const char *names[] = {"libcuda.so.1", "libcuda.so", NULL};
    void *h = open_library(names, 0, path, pathBytes);
    if (h == NULL) {
        snprintf(error, errorBytes,
                 "no NVIDIA driver library (libcuda.so.1) was found: this machine has no NVIDIA driver installed, "
                 "or it lies outside the search path; install the driver, or set LOFT_CUDA_LIBS to the folder holding libcuda.so.1");
        return 1;
    }
    int failed = 0;
    RESOLVE(cuInit, "cuInit");
    RESOLVE(cuDriverGetVersion, "cuDriverGetVersion");
    RESOLVE(cuDeviceGetCount, "cuDeviceGetCount");
    RESOLVE(cuDeviceGet, "cuDeviceGet");
    RESOLVE(cuDeviceGetName, "cuDeviceGetName");
    RESOLVE(cuDeviceGetAttribute, "cuDeviceGetAttribute");
    RESOLVE(cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    RESOLVE(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    RESOLVE(cuCtxSetCurrent, "cuCtxSetCurrent");
    RESOLVE(cuCtxSynchronize, "cuCtxSynchronize");
    RESOLVE(cuMemAlloc, "cuMemAlloc_v2");
    RESOLVE(cuMemFree, "cuMemFree_v2");
    RESOLVE(cuMemGetInfo, "cuMemGetInfo_v2");
    RESOLVE(cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    RESOLVE(cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    RESOLVE(cuMemcpyDtoD, "cuMemcpyDtoD_v2");
    RESOLVE(cuMemsetD8, "cuMemsetD8_v2");
    RESOLVE(cuModuleLoadData, "cuModuleLoadData");
    RESOLVE(cuModuleGetFunction, "cuModuleGetFunction");
    RESOLVE(cuLaunchKernel, "cuLaunchKernel");
    RESOLVE(cuGetErrorName, "cuGetErrorName");
    RESOLVE(cuGetErrorString, "cuGetErrorString");
    return failed;
}

int loft_cuda_load_nvrtc(loft_nvrtc *out, char *path, size_t pathBytes, char *error, size_t errorBytes) {
    memset(out, 0, sizeof *out);
    const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", NULL};
    void *h = open_library(names, 1, path, pathBytes);
    if (h == NULL) {
        snprintf(error, errorBytes,
                 "NVRTC (libnvrtc.so.12 or .13), which compiles Loft's kernels at run time, was not found; install the "
                 "CUDA toolkit, or `pip install nvidia-cuda-nvrtc-cu12`, or set LOFT_CUDA_LIBS to the folder holding libnvrtc.so.*");
        return 1;
    }
    int failed = 0;
    RESOLVE(nvrtcVersion, "nvrtcVersion");
    RESOLVE(nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs");
    RESOLVE(nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs");
    RESOLVE(nvrtcCreateProgram, "nvrtcCreateProgram");
    RESOLVE(nvrtcDestroyProgram, "nvrtcDestroyProgram");
    RESOLVE(nvrtcCompileProgram, "nvrtcCompileProgram");
    RESOLVE(nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    RESOLVE(nvrtcGetProgramLog, "nvrtcGetProgramLog");
    RESOLVE(nvrtcGetPTXSize, "nvrtcGetPTXSize");
    RESOLVE(nvrtcGetPTX, "nvrtcGetPTX");
    RESOLVE(nvrtcGetErrorString, "nvrtcGetErrorString");
    RESOLVE_OPTIONAL(nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    RESOLVE_OPTIONAL(nvrtcGetCUBIN, "nvrtcGetCUBIN");
    return failed;
}

int loft_cuda_load_cublaslt(loft_cublaslt *out, char *path, size_t pathBytes, char *error, size_t errorBytes) {
    memset(out, 0, sizeof *out);
    const char *names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so", NULL};
    void *h = open_library(names, 0, path, pathBytes);
    if (h == NULL) {
        snprintf(error, errorBytes,
                 "cuBLASLt (libcublasLt.so.12 or .13), which runs Loft's matrix products on the GPU, was not found; install "
                 "the CUDA toolkit, or `pip install nvidia-cublas-cu12`, or set LOFT_CUDA_LIBS to the folder holding libcublasLt.so.*");
        return 1;
    }
    int failed = 0;
    RESOLVE(cublasLtCreate, "cublasLtCreate");
    RESOLVE(cublasLtDestroy, "cublasLtDestroy");
    RESOLVE(cublasLtGetVersion, "cublasLtGetVersion");
    RESOLVE(cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate");
    RESOLVE(cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
    RESOLVE(cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
    RESOLVE(cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
    RESOLVE(cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
    RESOLVE(cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
    RESOLVE(cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
    RESOLVE(cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
    RESOLVE(cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
    RESOLVE(cublasLtMatmul, "cublasLtMatmul");
    return failed;
}
