// Package version holds the release version stamped into every binary at
// build time (make build VERSION=x sets it through -ldflags -X), and the
// source revision the Go toolchain records in the build info.
package version

import (
	"runtime/debug"
)

// Version is "dev" unless the build stamps it.
var Version = "dev"

// Line is what `<program> version` prints: the program, Version, and the
// VCS revision when the build recorded one (go build in a git checkout
// does; go run, go test and -buildvcs=false do not), with "modified" when
// the checkout had uncommitted changes.
//
//	wisp-agent 0.3.0 (revision 1f938a4c0e4a2c2b..., modified)
func Line(program string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " " + Version
	}
	return program + " " + Version + revision(info.Settings)
}

// revision is " (revision R)" or " (revision R, modified)" from the build
// settings, "" without vcs.revision.
func revision(settings []debug.BuildSetting) string {
	var rev string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return ""
	}
	if modified {
		return " (revision " + rev + ", modified)"
	}
	return " (revision " + rev + ")"
}
