# Test cases with every outcome, for the test runner's own tests.
package suite.sample_test

import rego.v1

conflict := 1 if input.x

conflict := 2 if input.x

test_passes if {
	1 + 1 == 2
}

test_fails if {
	1 + 1 == 3
}

test_undefined_fails if {
	input.missing == 1
}

test_errors if {
	conflict == 1 with input as {"x": true}
}

todo_test_later if {
	false
}

test_prints_then_fails if {
	print("hello from a test")
	false
}

helper_not_a_test := true

test_function_is_not_a_test(x) := x
