package grid

// testVocabulary is what the tests' specs may name.
var testVocabulary = TrainingVocabulary()
