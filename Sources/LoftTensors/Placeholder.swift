public enum LoftTensorsPlaceholder {}
