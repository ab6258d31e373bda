// Package importer compiles but imports broken, so its tests cannot build.
package importer

import "example.com/testreport/broken"

var Answer = broken.Answer()
