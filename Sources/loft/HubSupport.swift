import LoftHub

/// A local path for a model argument: itself, or for a Hub id ("org/name")
/// the Hugging Face cache's snapshot, downloaded with a progress line.
func localModel(_ source: String) throws -> String {
    try HubModel.localPath(source, progress: DownloadProgressLine().update)
}
