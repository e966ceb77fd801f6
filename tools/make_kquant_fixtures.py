#!/usr/bin/env python3
"""Reference bytes for Loft's ggml quantizers, from ggml itself.

Calls ggml_quantize_chunk (no importance matrix, so ggml uses its reference
quantizers, quantize_row_<type>_ref, exactly as llama-quantize does without
--imatrix) in the libggml-base shared library that llama-cpp-python ships, on
rows of random float32 values, and writes to Tests/LoftFormatsTests/Fixtures/kquants/:

  input.f32          rows x 512 little-endian float32 values
  <TYPE>.bin         ggml's quantized bytes of all rows, for each type
  meta.json          rows, row length, types, the library used

The rows mix shapes that exercise every branch of the quantizers: normal
values, all-positive rows (min clamped to 0), rows with an outlier, tiny
magnitudes, heavy tails, an all-zero sub-block and an all-zero super-block.

Run: /opt/refvenv/bin/python tools/make_kquant_fixtures.py
"""
import ctypes
import json
import pathlib

import numpy as np
import llama_cpp

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "LoftFormatsTests" / "Fixtures" / "kquants"
LIB = pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"

# ggml_type numbers (ggml.h)
TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
ROW = 512


def rows(rng):
    out = []
    out.append(rng.normal(0, 1, ROW))                       # plain normal
    out.append(rng.normal(0, 0.02, ROW))                    # weight-like scale
    out.append(np.abs(rng.normal(0.5, 0.3, ROW)) + 0.01)     # all positive: the min is clamped to 0
    out.append(-np.abs(rng.normal(0, 1, ROW)))              # all negative
    r = rng.normal(0, 0.05, ROW); r[rng.integers(0, ROW, 3)] = [4.0, -6.0, 9.0]
    out.append(r)                                           # outliers
    out.append(rng.standard_t(2, ROW) * 0.1)                # heavy tails
    out.append(rng.normal(0, 1e-6, ROW))                    # tiny magnitudes
    r = rng.normal(0, 1, ROW); r[32:64] = 0; r[256:512] = 0
    out.append(r)                                           # a zero sub-block and a zero super-block
    r = rng.uniform(-1, 1, ROW); r[100:116] = 0
    out.append(r)                                           # uniform, a zero 16-group (Q6_K)
    out.append(np.round(rng.normal(0, 4, ROW)) / 8)         # values on a grid (ties in rounding)
    return np.stack(out).astype(np.float32)


def main():
    lib = ctypes.CDLL(str(LIB))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    x = np.ascontiguousarray(rows(np.random.default_rng(20261122)))
    OUT.mkdir(parents=True, exist_ok=True)
    x.astype("<f4").tofile(OUT / "input.f32")
    meta = {"rows": int(x.shape[0]), "row_length": ROW, "types": {},
            "source": f"ggml_quantize_chunk in {LIB.name} of llama-cpp-python {llama_cpp.__version__}, imatrix NULL"}
    for name, t in TYPES.items():
        size = lib.ggml_row_size(t, ROW) * x.shape[0]
        dst = (ctypes.c_uint8 * size)()
        n = lib.ggml_quantize_chunk(t, x.ctypes.data, dst, 0, x.shape[0], ROW, None)
        assert n == size, (name, n, size)
        (OUT / f"{name}.bin").write_bytes(bytes(dst))
        meta["types"][name] = {"ggml_type": t, "bytes": size}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
