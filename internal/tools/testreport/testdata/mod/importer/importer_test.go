package importer

import "testing"

func TestNeverRuns(t *testing.T) { _ = Answer }
