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
