// Package secrets keeps module-scoped secrets (issue 14): it validates
// their names and values, seals them with AES-256-GCM (internal/sealbox;
// a fresh nonce per value, "module\x00name" bound as additional data, the
// key's id kept beside each value) before the store sees them, opens them
// for dispatch and for agents' desired sets, caches what it opened for a
// short while, and re-seals every value under a new key (Rotate).
//
// The key comes from the controller's data dir (<data-dir>/secrets.key,
// 32 random bytes made 0600 on first start) or WISP_SECRETS_KEY (base64);
// older keys are given to read values not yet re-sealed (LoadRing).
//
// It must never log a value, put one in an error, or hand one to anything
// but a dispatch (protocol.Invoke.Env) or a desired set
// (protocol.DesiredFunction.Secrets), both of which travel only inside an
// agent's QUIC session. Listing gives names and times, never values.
package secrets
