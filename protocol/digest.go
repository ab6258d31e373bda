package protocol

import "strings"

// IsDigest reports whether s is a code digest in the one form Wisp writes
// everywhere: "sha256:" and 64 lowercase hex digits. Decoding does not
// check digests (see the package doc); receivers that keep or act on a
// digest from a peer or a user call this.
func IsDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
