import XCTest
@testable import LoftTensors

final class TensorsSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
