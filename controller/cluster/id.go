package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"os"
)

// NewInstanceID names one controller process in its cluster: the
// operator's choice when given, else the host name and six random hex
// digits, so that controllers on one host (or restarted on it) never share
// an id. It owns leases and labels this controller's agent links.
func NewInstanceID(given string) string {
	if given != "" {
		return given
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "controller"
	}
	var b [3]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
