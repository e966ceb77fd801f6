extension CPUBackend {
    public func scaleColumns(_ x: Tensor, by scales: Tensor, into y: Tensor, accumulate: Bool) {
        let m = scales.count
        precondition(m > 0 && x.count == y.count && x.count % m == 0,
                     "scaleColumns: \(x.shape) ⊙ \(scales.shape) into \(y.shape)")
        let (xp, sp, yp) = (x.floats, scales.floats, y.floats)
        let rows = x.count / m
        parallelChunks(rows, minimumPerChunk: max(1, (1 << 15) / m)) { r in
            for row in r {
                let base = row * m
                if accumulate {
                    for j in 0 ..< m { yp[base + j] += xp[base + j] * sp[j] }
                } else {
                    for j in 0 ..< m { yp[base + j] = xp[base + j] * sp[j] }
                }
            }
        }
    }

    public func columnDots(_ a: Tensor, _ b: Tensor, into out: Tensor, accumulate: Bool) {
        let m = out.count
        precondition(m > 0 && a.count == b.count && a.count % m == 0, "columnDots: \(a.shape) · \(b.shape) into \(out.shape)")
        let (ap, bp, op) = (a.floats, b.floats, out.floats)
        let rows = a.count / m
        // Threads split the columns, so each sum runs over rows in a fixed
        // order and the result does not depend on the thread count.
        parallelChunks(m, minimumPerChunk: 64) { r in
            var sums = [Double](repeating: 0, count: r.count)
            for row in 0 ..< rows {
                let base = row * m
                for (k, j) in r.enumerated() { sums[k] += Double(ap[base + j]) * Double(bp[base + j]) }
            }
            for (k, j) in r.enumerated() { op[j] = Float((accumulate ? Double(op[j]) : 0) + sums[k]) }
        }
    }
}
