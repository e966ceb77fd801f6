import Foundation
import XCTest
@testable import LoftFormats

/// Loft's strict JSON parser against Foundation's JSONSerialization (an
/// independent implementation) on valid documents, and on what it must reject.
final class JSONParserTests: XCTestCase {
    /// Converts our value to the Foundation shape so the two can be compared.
    func foundation(_ v: JSONValue) -> NSObject {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return NSNumber(value: b)
        case .int(let i): return NSNumber(value: i)
        case .double(let d): return NSNumber(value: d)
        case .string(let s): return s as NSString
        case .array(let a): return a.map { foundation($0) } as NSArray
        case .object(let o): return Dictionary(uniqueKeysWithValues: o.keys.map { ($0, foundation(o[$0]!)) }) as NSDictionary
        }
    }

    func testAgreesWithFoundation() throws {
        let docs = [
            #"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5,"g":1e3,"h":"\u00e9\ud83d\ude00\n\t\"\\\/"}"#,
            #"[]"#, #"{}"#, #" [1, 2.5, -3, 9007199254740993, "x"] "#, #""plain""#, #"0"#, #"-0.0"#,
            #"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#,
            "{\"é\":\"ü\",\"nested\":[[[[]]]]}",
        ]
        for doc in docs {
            let ours = try JSONParser.parse(doc)
            let theirs = try JSONSerialization.jsonObject(with: Data(doc.utf8), options: [.fragmentsAllowed]) as AnyObject
            XCTAssertTrue(foundation(ours).isEqual(theirs), "\(doc): \(ours) vs \(theirs)")
        }
        // Integers stay exact past 2^53, and object key order is kept.
        XCTAssertEqual(try JSONParser.parse("9007199254740993"), .int(9_007_199_254_740_993))
        XCTAssertEqual(try JSONParser.parse(#"{"z":1,"a":2,"m":3}"#).object?.keys, ["z", "a", "m"])
        XCTAssertEqual(try JSONParser.parse(#""\ud83d\ude00""#).string, "😀")
    }

    func testRejectsInvalidDocuments() {
        let bad = [
            "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[01]", "[1.]", "[.5]", "[1e]", "[-]", "tru", "nul",
            "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\u{01}\"", "[1] [2]", "{\"a\":1,\"a\":2}",
            "[NaN]", "[Infinity]", "'a'", String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
        ]
        for doc in bad {
            XCTAssertThrowsError(try JSONParser.parse(doc), "accepted: \(doc.debugDescription)")
        }
        XCTAssertThrowsError(try JSONParser.parse(Data([0x22, 0xC3, 0x28, 0x22])), "invalid UTF-8")
    }

    /// `entries(at:in:)`: the object at a path, keys as spelled and in order
    /// (canonically equal spellings stay two keys), past values of every kind
    /// that it steps over (escaped quotes and brackets inside strings, nesting).
    func testEntriesKeepKeysAsSpelled() throws {
        let doc = #"{"a": [1, "x\"]}", {"b": "]"}], "n": -1.5e3, "t": true, "model": {"merges": [["\"", "{"]], "#
            + #""vocab": {"é": 1, "é": 2, "﻿//": 3, "//": 0}, "z": null}}"#
        let entries = try XCTUnwrap(JSONParser.entries(at: ["model", "vocab"], in: Data(doc.utf8)))
        XCTAssertEqual(entries.map { Array($0.key.unicodeScalars.map(\.value)) },
                       [[0xE9], [0x65, 0x301], [0xFEFF, 0x2F, 0x2F], [0x2F, 0x2F]])
        XCTAssertEqual(entries.map { $0.value.int }, [1, 2, 3, 0])
        XCTAssertNil(try JSONParser.entries(at: ["model", "missing"], in: Data(doc.utf8)))
        XCTAssertNil(try JSONParser.entries(at: ["n"], in: Data(doc.utf8)), "not an object")
        XCTAssertThrowsError(try JSONParser.entries(at: ["model", "vocab"], in: Data(#"{"model": {"vocab": {"a": }}}"#.utf8)))
    }
}
