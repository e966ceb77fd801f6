import Foundation

/// Where test fixtures live. Small ones are committed beside each test target
/// (`Tests/<Target>/Fixtures`); large real-world ones stay in `../shared/fixtures`
/// next to the repository, as CI's clean clone has them.
enum TestPaths {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let shared = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
}

extension TestPaths {
    /// The real SmolLM2-135M-Instruct GGUF that `tools/fetch-model.sh` caches.
    /// CI runs that script before the tests; a missing file fails loudly.
    static var smolLM2: String {
        if let p = ProcessInfo.processInfo.environment["LOFT_TEST_MODEL"] { return p }
        let cache = ProcessInfo.processInfo.environment["LOFT_CACHE"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/loft").path
        return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
}
