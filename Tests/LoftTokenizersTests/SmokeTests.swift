import XCTest
@testable import LoftTokenizers

final class TokenizersSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
