package store

import "errors"

var (
	// ErrNotFound: the module, function, code, subject, script, join token
	// (or it has expired), agent, activation or queued sink delivery does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the name, id or hash is already taken.
	ErrExists = errors.New("already exists")
	// ErrDefaultModule: the default module "_" cannot be deleted or renamed.
	ErrDefaultModule = errors.New("the default module cannot be deleted or renamed")
	// ErrDigestMismatch: Function.Digest is not "sha256:<hex>" of the code
	// passed with it. The store refuses such writes because agents and caches
	// trust digests to name their bytes.
	ErrDigestMismatch = errors.New("digest does not match the code")
	// ErrInvalid: a value the store cannot keep as given (an empty
	// activation id). The callers validate; this guards against their bugs.
	ErrInvalid = errors.New("invalid value")
	// ErrOwner: the subject still owns modules, so it cannot be deleted.
	ErrOwner = errors.New("the subject owns modules")
	// ErrLocked: the embedded store's file is held by another process (another
	// controller, or `wisp dev`, using the same data directory).
	ErrLocked = errors.New("locked by another process")
	// ErrClosed: the store was closed (WatchChanges ends with it).
	ErrClosed = errors.New("store closed")
)
