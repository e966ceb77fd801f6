import Foundation
import LoftTestSupport

typealias TestPaths = SharedTestPaths

extension SharedTestPaths {
    /// This target's committed fixtures.
    static let fixtures = SharedTestPaths.fixtures(of: "LoftDataTests")
}
