// Package broken does not compile: the test checks that the compiler's
// message reaches the report.
package broken

func Answer() int { return "forty-two" }
