/// Per-output-column operations that DoRA needs: its result scales each
/// output feature by m/‖W + ΔW‖, and the magnitude's gradient is a sum over
/// tokens of one column times another.
public protocol BackendColumns {
    /// y[N, M] (+)= x[N, M] ⊙ scales[M] (each column j times scales[j]); y may alias x.
    func scaleColumns(_ x: Tensor, by scales: Tensor, into y: Tensor, accumulate: Bool)
    /// out[M] (+)= Σ_n a[n, j] · b[n, j], accumulated in double precision.
    func columnDots(_ a: Tensor, _ b: Tensor, into out: Tensor, accumulate: Bool)
}
