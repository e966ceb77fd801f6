import Foundation
import LoftHub

/// The progress line of Hub dataset downloads (on a terminal only).
private let downloadProgress = DownloadProgressLine()

/// The files of a dataset entry: a local file, directory or glob (a local path
/// always wins), or a Hub dataset's files for its config and split, downloaded
/// into the Hugging Face cache.
public func datasetFiles(_ spec: DatasetSpec) throws -> [String] {
    if let files = spec.resolvedFiles { return files }
    guard HubDataset.isHubID(spec.path) else {
        if let patterns = spec.dataFiles {
            // data_files under a local directory: patterns relative to it.
            let files = try patterns.flatMap { try expandDatasetPath((spec.path as NSString).appendingPathComponent($0)) }
            return Array(Set(files)).sorted()
        }
        return try expandDatasetPath(spec.path)
    }
    var hub = HubDataset()
    if isatty(2) != 0 { hub.hub.progress = { downloadProgress.update(file: $0, done: $1, total: $2) } }
    do {
        return try hub.files(spec.path, config: spec.name, split: spec.splitName, revision: spec.revision, dataFiles: spec.dataFiles)
    } catch let e as HubError {
        throw DataError(e.description)
    }
}
