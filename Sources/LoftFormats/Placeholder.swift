public enum LoftFormatsPlaceholder {}
