package store

import (
	"context"
	"time"
)

// DefaultModule is the module used when a request names none. It always exists.
const DefaultModule = "_"

// Function is one function's metadata. Code is referenced by Digest.
type Function struct {
	Module string
	Name   string
	// Digest is "sha256:<hex>" of the wasm bytes.
	Digest string
	// Size is the length of the wasm bytes.
	Size int64
	// ABI is the runtime's name for the detected ABI ("funless-v1" or "wasi-command").
	ABI string
	// Events, Sinks and Metadata are the JSON the user sent, validated and
	// normalised by the API layer; the store keeps them verbatim. nil means absent.
	Events   []byte
	Sinks    []byte
	Metadata []byte
	Created  time.Time
	Updated  time.Time
}

// Module is a module with the names of its functions, sorted.
type Module struct {
	Name      string
	Functions []string
}

// Subject is an API user. Only the hash of its token is kept.
type Subject struct {
	Name      string
	TokenHash []byte // sha256 of the token; tokens are high-entropy so no KDF is needed
	Admin     bool
	Created   time.Time
}

// Script is an APP scheduling script: its name and YAML source.
type Script struct {
	Name    string
	Source  []byte
	Created time.Time
}

// Store is the controller's persistence. Implementations are safe for
// concurrent use.
type Store interface {
	// ListModules returns module names, sorted, always including DefaultModule.
	ListModules(ctx context.Context) ([]string, error)
	// CreateModule fails with ErrExists if the name is taken.
	CreateModule(ctx context.Context, name string) error
	// GetModule fails with ErrNotFound.
	GetModule(ctx context.Context, name string) (Module, error)
	// RenameModule keeps the module's functions. ErrNotFound, ErrExists,
	// ErrDefaultModule (renaming "_" or to "_").
	RenameModule(ctx context.Context, from, to string) error
	// DeleteModule deletes its functions too. ErrNotFound, ErrDefaultModule.
	DeleteModule(ctx context.Context, name string) error

	// CreateFunction stores fn and its code (code is stored only if its digest
	// is new). ErrNotFound if fn.Module does not exist, ErrExists if the
	// (module, name) pair is taken. Created/Updated are set by the store.
	CreateFunction(ctx context.Context, fn Function, code []byte) (Function, error)
	// UpdateFunction replaces an existing function's code and fields.
	// ErrNotFound if it does not exist. It returns the previous version.
	UpdateFunction(ctx context.Context, fn Function, code []byte) (prev Function, err error)
	// GetFunction fails with ErrNotFound (module or function).
	GetFunction(ctx context.Context, module, name string) (Function, error)
	// ListFunctions lists every function of every module, sorted by module then name.
	ListFunctions(ctx context.Context) ([]Function, error)
	// DeleteFunction fails with ErrNotFound. It returns what was deleted.
	DeleteFunction(ctx context.Context, module, name string) (Function, error)
	// Code returns the wasm bytes of a digest. ErrNotFound.
	Code(ctx context.Context, digest string) ([]byte, error)

	// CreateSubject fails with ErrExists.
	CreateSubject(ctx context.Context, s Subject) (Subject, error)
	// ListSubjects returns subjects sorted by name (token hashes included; the
	// API must not show them).
	ListSubjects(ctx context.Context) ([]Subject, error)
	// SubjectByTokenHash finds the subject holding a token. ErrNotFound.
	SubjectByTokenHash(ctx context.Context, hash []byte) (Subject, error)

	// PutScript creates a script. ErrExists.
	PutScript(ctx context.Context, s Script) (Script, error)
	// GetScript fails with ErrNotFound.
	GetScript(ctx context.Context, name string) (Script, error)
	// ListScripts returns scripts sorted by name.
	ListScripts(ctx context.Context) ([]Script, error)

	// Close releases the store's resources.
	Close() error
}
