public enum LoftModelsPlaceholder {}
