package weights

// For the tests of package weights_test, which read the Python-made
// fixtures through weights/resnetkeys (it imports this package).
var (
	Fixtures     = fixtures
	LoadExpected = loadExpected
	CheckState   = checkState
)
