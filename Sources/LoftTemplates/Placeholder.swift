// Placeholder: the Jinja chat-template layer (issue 3) lands here.
public enum LoftTemplatesVersion { public static let placeholder = true }
