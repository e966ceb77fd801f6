import XCTest
@testable import LoftModels

final class ModelsSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
