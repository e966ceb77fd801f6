public enum LoftInferencePlaceholder {}
