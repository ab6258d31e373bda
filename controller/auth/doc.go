// Package auth makes and checks the controller's REST bearer tokens.
//
// A token is "wisp_" followed by 32 random bytes in unpadded base64url (256
// bits). Only its sha256 is stored, as a store.Subject; the token itself is
// shown once: to the operator in <datadir>/admin.token for the admin, in the
// creation response for other subjects. Because tokens are long random
// secrets, a plain sha256 is enough (no KDF) and looking a subject up by the
// hash leaks nothing useful through timing; the hash the store returns is
// still compared in constant time before it is trusted.
//
// The package must never log, list or otherwise reveal a token, and never
// keeps one in memory longer than the call that made it.
package auth
