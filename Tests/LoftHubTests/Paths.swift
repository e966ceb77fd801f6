import Foundation
import LoftTestSupport

typealias TestPaths = SharedTestPaths
