// Package version holds the release version stamped into every binary at
// build time (make build VERSION=x sets it through -ldflags -X).
package version

// Version is "dev" unless the build stamps it.
var Version = "dev"
