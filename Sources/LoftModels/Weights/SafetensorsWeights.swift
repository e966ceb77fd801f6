import LoftFormats
import LoftTensors
// TEMPORARY stub until the safetensors reader lands.
public final class SafetensorsWeights: WeightSource {
    public let path: String
    public init(directory: String) throws { path = directory; throw FormatError(directory, "safetensors not yet supported") }
    public func contains(_ name: String) -> Bool { false }
    public func load(_ name: String) throws -> Tensor? { nil }
    public var storageSummary: [String: Int] { [:] }
}
