import XCTest
@testable import LoftFormats

final class FormatsSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
