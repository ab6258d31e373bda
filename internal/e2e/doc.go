// Package e2e holds end-to-end tests that build the real binaries and run
// them as processes on loopback: a controller, agents, REST calls, kill -9,
// restarts. It has no code of its own.
package e2e
