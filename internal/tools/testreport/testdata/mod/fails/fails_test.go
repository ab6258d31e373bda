package fails

import "testing"

func TestFails(t *testing.T) { t.Error("a failure the report must show") }
