/// llama.cpp's converter reorders the rows of Llama-family `attn_q` / `attn_k`
/// weights so that rotary pairs sit next to each other (`permute(w, n_head)` in
/// convert_hf_to_gguf.py). Within each head of `2 * half` rows, the Hugging Face
/// row `i * half + k` (i < 2, k < half) becomes GGUF row `2k + i`.
/// `unpermuteLlamaQK` restores the Hugging Face order, as transformers'
/// `reverse_permute_weights` does. For `attn_k` pass the number of KV heads.
///
/// `w` is a row-major `rows × cols` matrix (GGUF's `dimensions[1] × dimensions[0]`),
/// changed in place. Throws when `rows` is not a multiple of `2 * heads`.
public func unpermuteLlamaQK(_ w: UnsafeMutablePointer<Float>, rows: Int, cols: Int, heads: Int) throws {
    try reorderLlamaQK(w, rows: rows, cols: cols, heads: heads, inverse: true)
}

/// The converter's permutation itself (the inverse of `unpermuteLlamaQK`).
public func permuteLlamaQK(_ w: UnsafeMutablePointer<Float>, rows: Int, cols: Int, heads: Int) throws {
    try reorderLlamaQK(w, rows: rows, cols: cols, heads: heads, inverse: false)
}

private func reorderLlamaQK(_ w: UnsafeMutablePointer<Float>, rows: Int, cols: Int, heads: Int, inverse: Bool) throws {
    guard heads > 0, rows >= 0, cols >= 0, rows % (2 * heads) == 0 else {
        throw FormatError("q/k permutation", "\(rows) rows cannot be split into \(heads) heads of two equal halves; check the head count (for attn_k use the KV head count)")
    }
    let headRows = rows / heads, half = headRows / 2
    guard half > 0, cols > 0 else { return }
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: headRows * cols)
    defer { scratch.deallocate() }
    for h in 0 ..< heads {
        let base = w + h * headRows * cols
        scratch.update(from: base, count: headRows * cols)
        for i in 0 ..< 2 {
            for k in 0 ..< half {
                let hf = i * half + k, gg = 2 * k + i  // Hugging Face row, GGUF row
                let (to, from) = inverse ? (hf, gg) : (gg, hf)
                (base + to * cols).update(from: scratch + from * cols, count: cols)
            }
        }
    }
}
