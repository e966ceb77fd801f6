import Foundation

/// Paths every test target uses. Small fixtures are committed beside each
/// test target (`Tests/<Target>/Fixtures`, see each target's TestPaths);
/// large real-world ones stay in `../shared/fixtures` next to the
/// repository, as CI's clean clone has them.
public enum SharedTestPaths {
    public static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let shared = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")

    /// `Tests/<target>/Fixtures`.
    public static func fixtures(of target: String) -> URL {
        repoRoot.appendingPathComponent("Tests/\(target)/Fixtures")
    }

    /// The real SmolLM2-135M-Instruct GGUF that `tools/fetch-model.sh` caches
    /// (LOFT_TEST_MODEL overrides it). CI runs that script before the tests;
    /// a missing file fails loudly.
    public static var smolLM2: String {
        if let p = ProcessInfo.processInfo.environment["LOFT_TEST_MODEL"] { return p }
        let cache = ProcessInfo.processInfo.environment["LOFT_CACHE"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/loft").path
        return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// Gemma 3 270M as GGUF Q4_K_M, cached by `tools/fetch-gemma3.sh`
    /// (LOFT_TEST_GEMMA3 overrides it). CI fetches it too; a missing file fails loudly.
    public static var gemma3: String {
        if let p = ProcessInfo.processInfo.environment["LOFT_TEST_GEMMA3"] { return p }
        let cache = ProcessInfo.processInfo.environment["LOFT_CACHE"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/loft").path
        return cache + "/models/gemma-3-270m-q4_k_m.gguf"
    }
}
