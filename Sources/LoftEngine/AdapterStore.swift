import Foundation
import LoftData
import LoftFormats
import LoftInference
import LoftModels
import LoftTemplates
import LoftTensors

/// An adapter the engine serves: where it lives, what it was checked to be,
/// and its weights while they are resident.
final class AdapterEntry {
    let name: String
    let directory: String
    let config: LoRAConfig
    /// The base storage it was trained on (f32 unless QLoRA & co.).
    let baseFormat: BaseWeightFormat
    let template: ChatTemplate?
    let stopTokens: Set<Int32>
    let loadedAt = Date()
    /// nil once evicted; reloaded from `directory` when a request needs it.
    var weights: DetachedAdapter?
    /// Requests queued or running with it (an adapter in use is never evicted).
    var pending = 0
    var lastUsed: UInt64 = 0

    init(name: String, directory: String, config: LoRAConfig, baseFormat: BaseWeightFormat, template: ChatTemplate?,
         stopTokens: Set<Int32>, weights: DetachedAdapter) {
        self.name = name; self.directory = directory; self.config = config; self.baseFormat = baseFormat
        self.template = template; self.stopTokens = stopTokens; self.weights = weights
    }

    func served(parent: String) -> ServedModel {
        ServedModel(name: name, parent: parent, directory: directory, rank: config.rank, loadedAt: loadedAt)
    }
}

/// The adapters registered by name, at most `maxResident` of them with their
/// weights in memory (least recently used dropped first).
struct AdapterStore {
    let maxResident: Int
    var entries: [String: AdapterEntry] = [:]
    var clock: UInt64 = 0
    /// Other base copies (adapters trained on a compact base), by format summary.
    var bases: [String: LlamaModel] = [:]

    init(maxResident: Int) { self.maxResident = maxResident }

    var residentCount: Int { entries.values.filter { $0.weights != nil }.count }

    mutating func touch(_ e: AdapterEntry) { clock += 1; e.lastUsed = clock }

    mutating func remove(_ name: String) { entries[name] = nil }

    /// Drops the least recently used resident weights not in use until one
    /// more fits; false when every resident adapter is in use.
    mutating func makeRoom(except: AdapterEntry?) -> Bool {
        while residentCount >= maxResident {
            let victims = entries.values.filter { $0.weights != nil && $0.pending == 0 && $0 !== except }
            guard let lru = victims.min(by: { $0.lastUsed < $1.lastUsed }) else { return false }
            lru.weights = nil
        }
        return true
    }
}

extension BatchEngine {
    /// Reads, checks and registers an adapter (replacing one of the same name).
    func adapterLoad(name: String, directory: String) throws -> ServedModel {
        func reject(_ reason: String) -> EngineError { .adapterRejected(name: name, reason: reason) }
        if name.isEmpty || name == baseName { throw reject("its name must be non-empty and differ from the base's (`\(baseName)`)") }
        let config: LoRAConfig
        do {
            _ = try PEFTAdapter.format(of: directory)
            config = try PEFTAdapter.readConfig(directory)
        } catch { throw reject("\(error)") }
        try checkConfig(config, reject)
        let format: BaseWeightFormat
        do { format = try BaseWeightFormat.read(adapterDirectory: directory) ?? .f32 } catch { throw reject("\(error)") }
        try checkBaseHash(directory, reject)
        let base = try baseModel(for: format, reject)
        let weights = try readWeights(directory, config: config, base: base, reject)
        // Its own template and special tokens, saved beside it at training.
        let files: AdapterTokenizerFiles
        do { files = try AdapterTokenizerFiles(directory: directory) } catch { throw reject("\(error)") }
        var template = baseTemplate
        if let source = files.chatTemplate ?? tokenizer.chatTemplate {
            do {
                template = try ChatTemplate(source, bosToken: files.bosToken ?? tokenizer.bosToken,
                                            eosToken: files.eosToken ?? tokenizer.eosToken)
            } catch { throw reject("its chat template does not compile: \(error)") }
        }
        var stops = baseStopTokens
        if let eos = files.eosToken, let id = tokenizer.tokenToID(eos) { stops.insert(Int32(id)) }
        let entry = AdapterEntry(name: name, directory: directory, config: config, baseFormat: format,
                                 template: template, stopTokens: stops, weights: weights)
        state.lock(); defer { state.unlock() }
        guard adapters.makeRoom(except: nil) else {
            throw reject("all \(adapters.maxResident) adapter slots (--max-adapters) hold adapters serving requests; retry when they finish or raise --max-adapters")
        }
        adapters.entries[name] = entry
        adapters.touch(entry)
        return entry.served(parent: baseName)
    }

    /// What adapter_config.json promises, checked before any weight is read.
    private func checkConfig(_ config: LoRAConfig, _ reject: (String) -> EngineError) throws {
        if config.useDoRA {
            throw reject("it is a DoRA adapter (use_dora): the batched engine applies plain low-rank updates per row and not DoRA's per-adapter weight renormalization; merge it with `loft merge --adapter` and serve the merged model")
        }
        if !config.modulesToSave.isEmpty {
            throw reject("it trains whole modules (modules_to_save: \(config.modulesToSave.joined(separator: ", "))), which would need a per-adapter embedding or output head; merge it with `loft merge --adapter` and serve the merged model")
        }
        if config.rank < 1 || config.rank > 1024 {
            throw reject("adapter_config.json's r is \(config.rank); a LoRA rank is between 1 and 1024")
        }
        if !config.alpha.isFinite || config.alpha == 0 { throw reject("adapter_config.json's lora_alpha is \(config.alpha); it must be a finite, non-zero number") }
        for t in config.targetModules where LoRAConfig.shortNames[t] == nil && t != "all-linear" {
            throw reject("target module `\(t)` in adapter_config.json is not a projection the engine applies (\(LoRAConfig.knownModules.joined(separator: ", ")))")
        }
        let c = model.config
        let smallest = min(c.hiddenSize, c.kvHeads * c.headDim)
        if config.rank > smallest { throw reject("r = \(config.rank) exceeds the smallest projection dimension (\(smallest)) of the base") }
    }

    /// The SHA-256 of the base file the adapter recorded (loft_run.json), when
    /// it can be compared: both the trained-on and the served base are files,
    /// or both directories (a GGUF of an HF directory is the same model with
    /// another hash, so then the shapes are the check).
    private func checkBaseHash(_ directory: String, _ reject: (String) -> EngineError) throws {
        let runFile = directory + "/loft_run.json"
        guard let modelPath, let data = FileManager.default.contents(atPath: runFile),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let recorded = json["base_model_sha256"] as? String else { return }
        let trainedOn = json["base_model"] as? String ?? ""
        var isDir: ObjCBool = false
        let trainedIsDir = FileManager.default.fileExists(atPath: trainedOn, isDirectory: &isDir) ? isDir.boolValue : !trainedOn.hasSuffix(".gguf")
        _ = FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDir)
        guard trainedIsDir == isDir.boolValue else { return }
        let served = baseHash()
        if let served, served != recorded {
            throw reject("it was trained on a base with SHA-256 \(recorded.prefix(12))… (\(trainedOn)), but this server's base \(modelPath) hashes to \(served.prefix(12))…; serve it with the base it was trained on")
        }
    }

    /// SHA-256 of the base model file (of config.json for a directory), as
    /// training records it; computed once.
    func baseHash() -> String? {
        hashLock.lock(); defer { hashLock.unlock() }
        if let h = cachedBaseHash { return h }
        guard let modelPath else { return nil }
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDir)
        let file = isDir.boolValue ? modelPath + "/config.json" : modelPath
        guard let handle = FileHandle(forReadingAtPath: file) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update([UInt8](chunk)) }
        let h = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        cachedBaseHash = h
        return h
    }

    /// The base an adapter runs on: this engine's model, or (for an adapter
    /// trained on a compact base, e.g. QLoRA's NF4) a second copy of the base
    /// in that storage, loaded on first use and decoding on its dequantized
    /// weights, exactly as `loft generate --adapter` runs it.
    private func baseModel(for format: BaseWeightFormat, _ reject: (String) -> EngineError) throws -> LlamaModel {
        if format.kind == .f32 || format == model.baseWeights { return model }
        state.lock()
        let existing = adapters.bases[format.summary]
        state.unlock()
        if let existing { return existing }
        guard let modelPath else {
            throw reject("it was trained on a \(format.summary) base; this engine was built from a model in memory and cannot load that base variant")
        }
        let loaded: LlamaModel
        do {
            (loaded, _) = try ModelLoader.load(modelPath, backend: model.backend, baseWeights: format)
        } catch { throw reject("its \(format.summary) base could not be built from \(modelPath): \(error)") }
        if model.backend is CPUBackend { loaded.dequantizeFrozenWeights() }
        state.lock(); defer { state.unlock() }
        if let raced = adapters.bases[format.summary] { return raced }
        adapters.bases[format.summary] = loaded
        return loaded
    }

    /// A's and B's values, read against the base's shapes (every tensor must
    /// fit a projection, every target module must get weights, all finite).
    private func readWeights(_ directory: String, config: LoRAConfig, base: LlamaModel,
                             _ reject: (String) -> EngineError) throws -> DetachedAdapter {
        let weights: DetachedAdapter
        modelLock.lock()
        do {
            (weights, _) = try PEFTAdapter.loadDetached(directory, for: base)
            modelLock.unlock()
        } catch {
            modelLock.unlock()
            throw reject("\(error)")
        }
        let targets = LoRAConfig.modules(config.targetModules.contains("all-linear") ? LoRAConfig.allLinear : config.targetModules,
                                         for: base.config)
        for t in targets {
            let short = LoRAConfig.shortNames[t]!
            if !weights.layers.contains(where: { $0[short] != nil }) {
                throw reject("adapter_config.json targets `\(t)` but the weights file has no lora_A/lora_B for it; the adapter is incomplete")
            }
        }
        for (i, layer) in weights.layers.enumerated() {
            for (module, lora) in layer {
                let a = base.backend.download(lora.a), b = base.backend.download(lora.b)
                if !a.allSatisfy(\.isFinite) || !b.allSatisfy(\.isFinite) {
                    throw reject("layer \(i) \(module): its weights hold NaN or infinity; the training run diverged")
                }
            }
        }
        keepPacked(weights)
        return weights
    }

    /// The weights and base of a request's adapter, reloading them if they
    /// were evicted (called locked, on the scheduler thread).
    func residentWeights(_ entry: AdapterEntry) throws -> (DetachedAdapter, LlamaModel) {
        adapters.touch(entry)
        let base = entry.baseFormat.kind == .f32 || entry.baseFormat == model.baseWeights ? model : adapters.bases[entry.baseFormat.summary]!
        if let w = entry.weights { return (w, base) }
        guard adapters.makeRoom(except: entry) else {
            throw EngineError.adapterRejected(name: entry.name, reason: "all \(adapters.maxResident) adapter slots hold adapters serving requests; retry shortly")
        }
        modelLock.lock(); defer { modelLock.unlock() }
        do {
            let (w, _) = try PEFTAdapter.loadDetached(entry.directory, for: base)
            keepPacked(w)
            entry.weights = w
            return (w, base)
        } catch {
            throw EngineError.adapterRejected(name: entry.name, reason: "reloading it from \(entry.directory) failed: \(error)")
        }
    }

    /// Lays a loaded adapter's LoRA weights out for decoding reads, rounded
    /// to half when the configuration asks (`halfPrecisionAdapters`); DoRA
    /// layers keep their own path.
    private func keepPacked(_ weights: DetachedAdapter) {
        for layer in weights.layers {
            for lora in layer.values where lora.magnitude == nil { lora.keepPacked(half: configuration.halfPrecisionAdapters) }
        }
    }

    /// A request using the adapter has ended.
    func adapterDone(_ entry: AdapterEntry) {
        state.lock(); entry.pending -= 1; state.unlock()
    }
}
