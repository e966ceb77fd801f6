// The training layer (issue 5) lands here.
enum LoftTrainingPlaceholder {}
