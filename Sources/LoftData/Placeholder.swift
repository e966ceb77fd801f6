// The dataset layer (issue 4) lands here.
enum LoftDataPlaceholder {}
