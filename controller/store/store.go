package store

import (
	"context"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
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
	// Spec is the function's settings (events, sinks, metadata), parsed
	// by the API; the store keeps them as their normalised JSON and parses
	// them back with fnspec.Decode.
	Spec fnspec.Spec
	// Unreadable is set on a function read back whose stored settings do
	// not parse (fnspec's "Bad stored data"): Spec then holds the fields
	// that do. Such a function must not run. Writes ignore it.
	Unreadable error
	Created    time.Time
	Updated    time.Time
}

// Module is a module with the names of its functions, sorted.
type Module struct {
	Name string
	// Owner is the name of the subject that created the module; "" is the
	// admin (modules an admin created, the default module, and every module
	// made before modules had owners).
	Owner     string
	Functions []string // nil in ListModules
}

// ModuleNames returns the names of ms, in their order.
func ModuleNames(ms []Module) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
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
	Name   string
	Source []byte
	// Owner is the subject that created it; "" is the admin, as Module.Owner.
	Owner   string
	Created time.Time
}

// JoinToken lets new agents join. The plain secret is shown once by
// `wisp-controller token create`; only its sha256 is kept.
type JoinToken struct {
	ID         string    // short public id, e.g. "jt_<8 hex>", unique
	SecretHash []byte    // sha256 of the secret, unique; secrets are high-entropy so no KDF is needed
	Created    time.Time // set by the store
	Expires    time.Time // zero: never; kept in UTC, truncated to microseconds
	// Uses is how many agents may join with the token; 0 means no limit,
	// which only tokens made before join tokens were counted (migration
	// 0006) have: the controller makes every new one with Uses ≥ 1.
	Uses int
	// Used counts the agents that joined with it; set by the store.
	Used int
}

// UsedUp reports whether no agent may join with jt any more.
func (jt JoinToken) UsedUp() bool { return jt.Uses > 0 && jt.Used >= jt.Uses }

// Agent is an edge agent known to the controller.
type Agent struct {
	ID             string    // "ag_<16 hex>", unique, chosen by the controller at join
	Name           string    // human name (not unique)
	CredentialHash []byte    // sha256 of the agent's credential, unique
	Labels         []string  // "key=value", as last reported, in the order reported; never nil
	Created        time.Time // set by the store
	LastSeen       time.Time // set by the store at creation, then by TouchAgent
	// JoinMemBytes is the total memory the agent reported when it joined
	// (0: unknown, for agents that joined before it was kept). The
	// scheduler never believes more than it.
	JoinMemBytes uint64
	// Control is what operators set on the agent; CreateAgent and JoinAgent
	// store it as given, SetAgentControl replaces it, TouchAgent keeps it.
	Control AgentControl
}

// AgentControl is what an operator sets on an agent (`wisp agent cordon`,
// `label`, `cap`). It survives controller restarts and reconnections.
type AgentControl struct {
	// Cordoned: no new invocation is scheduled to the agent.
	Cordoned bool
	// Labels are "key=value" labels set from the controller; each overrides
	// the agent's own label of the same key. Never nil when read back.
	Labels []string
	// MemCapBytes caps the memory the scheduler believes the agent has;
	// 0: no operator cap.
	MemCapBytes uint64
}

// Activation is one invocation's record. IDs are 26-character sortable
// strings (activationid.New): their text order is their time order.
type Activation struct {
	ID       string
	Module   string
	Function string
	Digest   string
	Agent    string // id of the agent that ran it; "" if none ran it
	Source   string // "api", "mqtt", "timer", "local-api", "local-mqtt", "local-timer"
	Code     int    // 0: ok; otherwise a stable wire error code (protocol.ErrorCode)
	Message  string // the error message; "" when ok
	Output   []byte // the function's JSON output (nil on error); kept verbatim
	Started  time.Time
	Duration time.Duration // kept exactly (nanoseconds)
	Recorded time.Time     // set by the store
	// Truncated says that Output or Message holds only the beginning of what
	// the function returned, or that Logs lost lines or bytes: the recorder
	// (controller/activations) bounds them before they are stored. The
	// store keeps the flag as given.
	Truncated bool
	// Logs are the lines the function wrote, in order, as the recorder
	// bounded them (controller/activations); nil when it wrote none.
	Logs []LogLine
	// Owner is the owner of the activation's module when it was recorded
	// ("" is the admin, also when the module did not exist), set by the
	// store: the record stays its owner's when the module is deleted and
	// its name taken by another subject.
	Owner string
}

// LogLine is one line a function wrote during an activation (the wire
// form is protocol.LogLine).
type LogLine struct {
	Time   time.Time // when the agent captured it (UTC, µs); zero if the agent did not say
	Stream string    // "console", "stderr" or "wisp" (a line the platform added, such as a truncation marker)
	Text   string
}

// Quarantine is a digest that no agent may run: it was compiling or
// running when an agent died (a poison pill). It stays until an operator
// releases it, whatever happens to the functions that use it.
type Quarantine struct {
	Digest string // "sha256:<hex>"
	// Reason says what the reporting agent was doing with the code.
	Reason string
	Agent  string    // id of the agent that reported the crash; "" when none did
	Since  time.Time // when the agent died with it, as the agent reported it (UTC, µs)
	// Created is set by the store.
	Created time.Time
}

// ActivationWithSinks is one element of a RecordActivations batch: the
// activation and the JSON of each of its function's sinks at record time.
type ActivationWithSinks struct {
	Activation
	Sinks [][]byte
	// SinkOutput, when not nil, is what the sinks receive instead of
	// Activation.Output: the whole output, when the recorder kept only its
	// beginning in the record. Each queued delivery keeps its own copy, so
	// a sink gets all of it however the record was bounded.
	SinkOutput []byte
}

// SinkDelivery is one (activation, sink) pair waiting to be delivered.
type SinkDelivery struct {
	ActivationID string
	SinkIndex    int    // index in the function's sinks at record time
	Sink         []byte // that sink's JSON, copied at record time (later edits of the function do not change it)
	// Module, Function and Started are the activation's. Output is the
	// activation's too, unless it was recorded with a SinkOutput: then it
	// is that (the whole output, not the record's truncated one).
	Module      string
	Function    string
	Output      []byte
	Started     time.Time
	Attempts    int       // failed attempts so far
	LastError   string    // the error of the last failed attempt; "" before any
	NextAttempt time.Time // not to be delivered before; set to Recorded when queued
}

// ActivationFilter selects activations for ListActivations. Every
// condition set must hold.
type ActivationFilter struct {
	Module   string // "" = any
	Function string // "" = any
	Owner    string // "" = any; otherwise only that subject's activations (Activation.Owner)
	// Agents: nil = any; otherwise only activations run by one of these
	// agent ids (an empty, non-nil slice selects none).
	Agents []string
	Source string           // "" = any; otherwise Activation.Source
	Status ActivationStatus // "" = any
	Since  time.Time        // activations started at or after; zero = any
	Until  time.Time        // activations started before; zero = any
	After  string           // only ids > After (cursor paging); "" = no bound
	Before string           // only ids < Before (cursor paging); "" = no bound
	// Order is the order of the list, and of the walk that Limit cuts.
	Order ActivationOrder
	// RecordedAfter and RecordedAfterID, with OrderRecorded only: only
	// activations whose (Recorded, ID) pair comes after this pair (zero
	// time and "": from the start). Followers page with it.
	RecordedAfter   time.Time
	RecordedAfterID string
	Limit           int // <= 0: DefaultActivationLimit; capped at MaxActivationLimit
}

// ActivationStatus selects activations by outcome.
type ActivationStatus string

const (
	StatusSuccess ActivationStatus = "success" // Code == 0
	StatusError   ActivationStatus = "error"   // Code != 0
)

// ActivationOrder is the order ListActivations returns.
type ActivationOrder int

const (
	// OldestFirst: ascending id (the zero value).
	OldestFirst ActivationOrder = iota
	// NewestFirst: descending id, that is newest start first.
	NewestFirst
	// OrderRecorded: ascending (Recorded, ID), the order in which the store
	// recorded them; an activation recorded late (an agent's outbox after a
	// partition) comes after the ones recorded before it, whatever its id.
	OrderRecorded
)

const (
	// DefaultActivationLimit is how many activations (or deliveries) a list
	// returns, or a prune removes, when the caller gives no limit.
	DefaultActivationLimit = 100
	// MaxActivationLimit caps the limit of one list or prune call.
	MaxActivationLimit = 1000
)

// ActivationVolume is how much of the store activations take.
type ActivationVolume struct {
	// Count is the number of activation records.
	Count int64
	// Bytes is the room they take, with their indexes and the sink delivery
	// queue: in Postgres the total relation size (heap, TOAST, indexes) of
	// activations and sink_deliveries; in the embedded store the pages of
	// its activations, activationsbyfn and deliveries buckets. Neither
	// counts room freed and not yet reused (see the package doc).
	Bytes int64
}

// Pinger is a store that can say whether it is reachable now, for the
// controller's readiness probe (/readyz). Both implementations are one;
// the Store interface does not require it, so a test double need not be.
type Pinger interface {
	Ping(ctx context.Context) error
}

var (
	_ Pinger = (*Postgres)(nil)
	_ Pinger = (*Embedded)(nil)
)

// CodeChecker is a store that can say whether it holds a digest's code
// without reading it: whether the code was collected (no function and no
// kept version uses it). Both implementations are one.
type CodeChecker interface {
	HasCode(ctx context.Context, digest string) (bool, error)
}

var (
	_ CodeChecker = (*Postgres)(nil)
	_ CodeChecker = (*Embedded)(nil)
)

// Store is the controller's persistence. Implementations are safe for
// concurrent use.
type Store interface {
	// ListModules returns every module (Name and Owner; Functions nil),
	// sorted by name, always including DefaultModule.
	ListModules(ctx context.Context) ([]Module, error)
	// CreateModule creates a module owned by owner ("": the admin). It
	// fails with ErrExists if the name is taken, whoever owns it, and with
	// ErrNotFound if owner is no subject (deleted meanwhile: DeleteSubject
	// and CreateModule are ordered, so no module outlives its owner).
	CreateModule(ctx context.Context, name, owner string) error
	// GetModule fails with ErrNotFound.
	GetModule(ctx context.Context, name string) (Module, error)
	// ModuleOwner returns a module's Owner. ErrNotFound.
	ModuleOwner(ctx context.Context, name string) (string, error)
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

	// FunctionVersions returns the kept versions of a function, newest
	// first; the newest is the function as it is now. A function never
	// updated since versions were kept has one, numbered 1, made from the
	// function itself. ErrNotFound (module or function).
	//
	// UpdateFunction adds a version (first keeping the previous one as
	// version 1 when the function has none), and its code is kept while
	// any kept version uses it. DeleteFunction and DeleteModule remove the
	// versions with the functions.
	FunctionVersions(ctx context.Context, module, name string) ([]FunctionVersion, error)
	// PruneFunctionVersions removes all but the newest keep versions of a
	// function (keep < 1 counts as 1), dropping the code no function or
	// kept version uses any more. It returns the digests of the versions
	// removed, newest first. ErrNotFound (module or function).
	PruneFunctionVersions(ctx context.Context, module, name string, keep int) (removed []string, err error)
	// KeptDigests returns, for every function with kept versions (keyed
	// "module/name"), up to n distinct digests of its versions other than
	// its current code, newest first: the code agents keep for rollbacks.
	// One read for all functions.
	KeptDigests(ctx context.Context, n int) (map[string][]string, error)

	// CreateSubject fails with ErrExists.
	CreateSubject(ctx context.Context, s Subject) (Subject, error)
	// ListSubjects returns subjects sorted by name (token hashes included; the
	// API must not show them).
	ListSubjects(ctx context.Context) ([]Subject, error)
	// SubjectByTokenHash finds the subject holding a token. ErrNotFound.
	SubjectByTokenHash(ctx context.Context, hash []byte) (Subject, error)
	// RotateSubjectToken replaces a subject's token hash: the old token
	// stops working when it returns. ErrNotFound, ErrExists if the hash is
	// another subject's.
	RotateSubjectToken(ctx context.Context, name string, hash []byte) error
	// DeleteSubject deletes a subject (its token stops working) with its
	// APP scripts (which only it could use), and gives its activations to
	// the admin (Owner ""), so that a later subject of the same name sees
	// none of them. ErrNotFound; ErrOwner while it owns a module.
	DeleteSubject(ctx context.Context, name string) error

	// PutScript creates a script, owned by s.Owner. ErrExists; ErrNotFound
	// if s.Owner is not "" and no subject, as CreateModule.
	PutScript(ctx context.Context, s Script) (Script, error)
	// GetScript fails with ErrNotFound.
	GetScript(ctx context.Context, name string) (Script, error)
	// ListScripts returns scripts sorted by name.
	ListScripts(ctx context.Context) ([]Script, error)

	// CreateJoinToken stores a join token and sets its Created. ErrExists if
	// its ID or its SecretHash is taken.
	CreateJoinToken(ctx context.Context, jt JoinToken) (JoinToken, error)
	// JoinTokenByHash finds the token whose secret hashes to hash. ErrNotFound,
	// also when the token has expired (Expires is not after the store's clock)
	// or is used up.
	JoinTokenByHash(ctx context.Context, hash []byte) (JoinToken, error)
	// JoinAgent spends one use of the token whose secret hashes to hash and
	// creates a (as CreateAgent does), in one transaction: of concurrent
	// joins with a token of N uses, N succeed. ErrNotFound when the token is
	// unknown, expired or used up; ErrExists as CreateAgent.
	JoinAgent(ctx context.Context, hash []byte, a Agent) (Agent, error)
	// ListJoinTokens returns every token, expired ones included (so that they
	// can be shown and deleted), sorted by Created then ID.
	ListJoinTokens(ctx context.Context) ([]JoinToken, error)
	// DeleteJoinToken fails with ErrNotFound.
	DeleteJoinToken(ctx context.Context, id string) error

	// CreateAgent stores an agent and sets its Created and LastSeen to the
	// store's clock. ErrExists if its ID or its CredentialHash is taken.
	CreateAgent(ctx context.Context, a Agent) (Agent, error)
	// AgentByID fails with ErrNotFound.
	AgentByID(ctx context.Context, id string) (Agent, error)
	// ListAgents returns agents sorted by Name then ID.
	ListAgents(ctx context.Context) ([]Agent, error)
	// TouchAgent replaces an agent's name and labels and sets its LastSeen to
	// seen (in UTC, truncated to microseconds). ErrNotFound.
	TouchAgent(ctx context.Context, id string, name string, labels []string, seen time.Time) error
	// SetAgentControl replaces what operators set on an agent and returns
	// the agent. ErrNotFound.
	SetAgentControl(ctx context.Context, id string, c AgentControl) (Agent, error)
	// DeleteAgent removes an agent: its credential is unknown from then on.
	// ErrNotFound.
	DeleteAgent(ctx context.Context, id string) error

	// RecordActivation stores a unless an activation with its ID exists and,
	// in the same transaction, queues one SinkDelivery per element of sinks
	// (only when a.Code == 0), due at once. It reports created=false, and
	// changes nothing, for a known ID: replays are recognised by id and
	// dropped. Recorded is set by the store. ErrInvalid for an empty ID.
	RecordActivation(ctx context.Context, a Activation, sinks [][]byte) (created bool, err error)
	// RecordActivations is RecordActivation for a batch (an outbox drain), in
	// one transaction: all are recorded or none is. It returns how many were
	// new; of several elements with one ID, the first counts.
	RecordActivations(ctx context.Context, as []ActivationWithSinks) (created int, err error)
	// GetActivation fails with ErrNotFound.
	GetActivation(ctx context.Context, id string) (Activation, error)
	// ListActivations returns the activations f selects, ascending by ID.
	ListActivations(ctx context.Context, f ActivationFilter) ([]Activation, error)
	// PendingDeliveries returns up to limit queued deliveries whose
	// NextAttempt is not after now, ascending by activation ID then sink
	// index (oldest activation first). limit as in ActivationFilter.
	PendingDeliveries(ctx context.Context, now time.Time, limit int) ([]SinkDelivery, error)
	// DeliveryDone removes a delivery from the queue. ErrNotFound.
	DeliveryDone(ctx context.Context, activationID string, sinkIndex int) error
	// DeliveryFailed counts a failed attempt: Attempts++, LastError = errMsg,
	// NextAttempt = next (UTC, microseconds). ErrNotFound.
	DeliveryFailed(ctx context.Context, activationID string, sinkIndex int, errMsg string, next time.Time) error
	// SinkFailures returns the queued deliveries of a function that failed at
	// least once (Attempts > 0), ascending by activation ID then sink index.
	SinkFailures(ctx context.Context, module, function string) ([]SinkDelivery, error)

	// PruneActivationsBefore removes, oldest first, at most limit of the
	// activations whose ID sorts before id (with activationid.First,
	// those older than a time). It returns how many it removed: fewer than
	// limit means none is left to remove. limit as in ActivationFilter.
	//
	// The three prune calls each run in one short transaction, so a caller
	// removes many records in many calls without holding a lock for long.
	// None removes an activation that still has a queued delivery (a
	// delivery is read with its activation): it goes at the first prune
	// after its last delivery is done.
	PruneActivationsBefore(ctx context.Context, id string, limit int) (int, error)
	// PruneActivationsBeyond removes, oldest first, at most limit of the
	// activations older than the newest keep (by ID). Held activations
	// count when the newest keep are found, so after all is removed there
	// are the newest keep and the older ones still held. keep < 0 counts
	// as 0.
	PruneActivationsBeyond(ctx context.Context, keep, limit int) (int, error)
	// PruneActivationsBeyondPerFunction is PruneActivationsBeyond within
	// each (module, function): of each, the newest keep stay. Each
	// function's are removed oldest first.
	PruneActivationsBeyondPerFunction(ctx context.Context, keep, limit int) (int, error)
	// ActivationVolume reports how many activations the store holds and
	// the room they take.
	ActivationVolume(ctx context.Context) (ActivationVolume, error)
	// QuarantineDigest stores q unless its digest is quarantined already
	// (the first report is kept) and reports whether it stored it. Created
	// is set by the store; Since is kept in UTC to the microsecond; Reason
	// is kept as valid UTF-8 without NUL bytes, at most MaxQuarantineReason
	// bytes. ErrInvalid for an empty digest or one holding a NUL byte.
	QuarantineDigest(ctx context.Context, q Quarantine) (created bool, err error)
	// ListQuarantine returns every quarantined digest, sorted by digest.
	ListQuarantine(ctx context.Context) ([]Quarantine, error)
	// ReleaseDigest ends a digest's quarantine and returns what it was.
	// ErrNotFound.
	ReleaseDigest(ctx context.Context, digest string) (Quarantine, error)

	// Close releases the store's resources.
	Close() error
}

// MaxQuarantineReason bounds a quarantine's stored reason, in bytes.
const MaxQuarantineReason = 1024
