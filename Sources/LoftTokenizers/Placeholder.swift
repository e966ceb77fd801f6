// Placeholder: the tokenizer layer (issue 3) lands here.
public enum LoftTokenizersVersion { public static let placeholder = true }
