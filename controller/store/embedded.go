package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Embedded is the Store kept in one bbolt file, for a controller without
// Postgres (wisp dev, a single box). One process at a time may open the file.
//
// The file's buckets (schema version 5):
//
//	meta/
//	  version          -> uint64 big-endian: the schema version (5)
//	modules/           the bucket's sequence numbers module ids
//	  <name>           -> module id, uint64 big-endian
//	moduleowners/      (since version 5)
//	  <module id>      -> the owning subject's name; absent: the admin (Module.Owner "")
//	functions/
//	  <module id>/     one bucket per module, keyed by id so a rename moves nothing
//	    <name>         -> functionRecord (JSON)
//	code/
//	  <digest>         -> wasm bytes ("sha256:<hex>" of them is the key)
//	coderefs/
//	  <digest>         -> how many functions and kept versions use the digest, uint64 big-endian;
//	                      never 0: the last reference deletes it and code/<digest>
//	subjects/
//	  <name>           -> subjectRecord (JSON)
//	tokens/
//	  <token hash>     -> subject name (the unique index on token hashes)
//	scripts/
//	  <name>           -> scriptRecord (JSON; its optional "owner" came with version 5: absent = the admin)
//	jointokens/        (since version 2)
//	  <id>             -> joinTokenRecord (JSON)
//	jointokenhashes/   (since version 2)
//	  <secret hash>    -> join token id (the unique index on secret hashes)
//	agents/            (since version 2)
//	  <id>             -> agentRecord (JSON)
//	agentcreds/        (since version 2)
//	  <credential hash> -> agent id (the unique index on credential hashes)
//	activations/       (since version 3)
//	  <id>             -> started (µs since 1970, int64 big-endian), then activationRecord (JSON;
//	                      its optional "truncated" came later without a new version: absent = false;
//	                      its optional "owner" came with version 5: absent = the admin;
//	                      its optional "logs" (encodeLogs, as base64) came later without a
//	                      new version: absent = no lines)
//	activationsbyfn/   (since version 3)
//	  <fn key>/        one bucket per (module, function) that has activations;
//	                   fn key = len(module) (uint16 big-endian), module, function
//	    <id>           -> started, as in activations/
//	deliveries/        (since version 3) the sink delivery queue
//	  <id> 0x00 <sink index, uint32 big-endian>
//	                   -> next attempt (µs, int64 big-endian), then deliveryRecord (JSON; its
//	                      optional "output", the whole output of a truncated activation, came
//	                      later without a new version: absent = read the activation's)
//	quarantine/        (since version 4)
//	  <digest>         -> quarantineRecord (JSON)
//	activationsbyrecorded/ (since version 6) every activation, in the order recorded
//	  <recorded (µs, int64 big-endian)> <id>
//	                   -> empty
//	versions/          (added without a new version: created at open, see additiveBuckets)
//	  <module id>/     one bucket per module with kept versions
//	    <function>/    one bucket per function with kept versions
//	      <number>     -> versionRecord (JSON); number uint64 big-endian; each
//	                      version is one reference in coderefs/
//	secrets/           (added without a new version: open creates it when missing)
//	  <module id>/     module-scoped secrets, sealed (see embedded_secrets.go)
//	    <name>         -> secretRecord (JSON)
//
// Activation ids are kept in bytes order, which is their time order; the
// started time leads each value so that a Since filter reads 8 bytes, not
// the record. The queue is keyed by activation, so PendingDeliveries (oldest
// activation first) walks it in order and skips the entries not yet due by
// their 8-byte prefix; a second index by next attempt would make every
// write twice as expensive to speed up only a queue that is backing off.
//
// OpenEmbedded upgrades an older file in place, in the transaction that
// opens it (see embeddedUpgrades); a file written by a newer Wisp is refused.
//
// bbolt runs one write transaction at a time, so every method is atomic and
// the reference counts need no further locking.
type Embedded struct {
	db  *bolt.DB
	log *slog.Logger
	// writeMu orders write transactions with the reports of their
	// changes (bbolt runs one writer at a time anyway), so watchers get
	// changes in commit order.
	writeMu sync.Mutex
	changes changeHub
	// members is the cluster membership, in memory (embedded_cluster.go).
	members members
}

var _ Store = (*Embedded)(nil)

// embeddedVersion is the schema version this build writes and reads.
// History: 1 (first version); 2 (join tokens and agents); 3 (activations
// and the sink delivery queue); 4 (the quarantine); 5 (owners of modules,
// scripts and activations); 6 (activations in the order recorded, for
// followers).
const embeddedVersion = 6

// embeddedLockTimeout is how long OpenEmbedded waits for another process to
// release the file before failing with ErrLocked.
const embeddedLockTimeout = time.Second

var (
	bucketMeta      = []byte("meta")
	bucketModules   = []byte("modules")
	bucketFunctions = []byte("functions")
	bucketCode      = []byte("code")
	bucketCodeRefs  = []byte("coderefs")
	bucketSubjects  = []byte("subjects")
	bucketTokens    = []byte("tokens")
	bucketScripts   = []byte("scripts")

	bucketJoinTokens      = []byte("jointokens")
	bucketJoinTokenHashes = []byte("jointokenhashes")
	bucketAgents          = []byte("agents")
	bucketAgentCreds      = []byte("agentcreds")

	bucketActivations     = []byte("activations")
	bucketActivationsByFn = []byte("activationsbyfn")
	bucketDeliveries      = []byte("deliveries")

	bucketQuarantine = []byte("quarantine")

	bucketModuleOwners = []byte("moduleowners")

	bucketActivationsByRecorded = []byte("activationsbyrecorded")

	bucketVersions = []byte("versions")

	keyVersion = []byte("version")

	allBuckets = [][]byte{bucketMeta, bucketModules, bucketFunctions, bucketCode,
		bucketCodeRefs, bucketSubjects, bucketTokens, bucketScripts,
		bucketJoinTokens, bucketJoinTokenHashes, bucketAgents, bucketAgentCreds,
		bucketActivations, bucketActivationsByFn, bucketDeliveries, bucketQuarantine,
		bucketModuleOwners, bucketActivationsByRecorded}

	// additiveBuckets came after schema version 6 without a new version:
	// nothing needs backfilling, so every open creates them if missing
	// (an older Wisp opening the file ignores them).
	additiveBuckets = [][]byte{bucketVersions}
)

// embeddedUpgrades[v] turns a file of schema version v+1 into one of version
// v+2. Each runs in the transaction that opens the file, which also writes
// the new meta/version, so an upgrade is all or nothing. Upgrades only add.
var embeddedUpgrades = []func(tx *bolt.Tx) error{
	// 1 -> 2: join tokens and agents.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketJoinTokens, bucketJoinTokenHashes, bucketAgents, bucketAgentCreds)
	},
	// 2 -> 3: activations and the sink delivery queue.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketActivations, bucketActivationsByFn, bucketDeliveries)
	},
	// 3 -> 4: the quarantine.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketQuarantine)
	},
	// 4 -> 5: module owners. Existing modules, scripts and activations
	// have none recorded: they are the admin's.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketModuleOwners)
	},
	// 5 -> 6: the activations in the order recorded, indexed from their
	// records.
	func(tx *bolt.Tx) error {
		if err := createBuckets(tx, bucketActivationsByRecorded); err != nil {
			return err
		}
		byRec := tx.Bucket(bucketActivationsByRecorded)
		return tx.Bucket(bucketActivations).ForEach(func(k, v []byte) error {
			_, rec, err := splitMicros(v)
			if err != nil {
				return fmt.Errorf("activation %q: %w", k, err)
			}
			recorded, err := recordRecorded(rec)
			if err != nil {
				return fmt.Errorf("activation %q: %w", k, err)
			}
			return byRec.Put(recordedKey(recorded, k), nil)
		})
	},
}

func createBuckets(tx *bolt.Tx, names ...[]byte) error {
	for _, b := range names {
		if _, err := tx.CreateBucket(b); err != nil {
			return fmt.Errorf("create bucket %q: %w", b, err)
		}
	}
	return nil
}

// functionRecord is a function as stored; its module and name are the keys.
type functionRecord struct {
	Digest   string    `json:"digest"`
	Size     int64     `json:"size"`
	ABI      string    `json:"abi"`
	Events   []byte    `json:"events"` // fnspec.Spec.Encode's JSON; nil: absent
	Sinks    []byte    `json:"sinks"`
	Metadata []byte    `json:"metadata"`
	Config   []byte    `json:"config,omitempty"` // issue 14; absent in older records
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

type subjectRecord struct {
	TokenHash []byte    `json:"token_hash"`
	Admin     bool      `json:"admin"`
	Created   time.Time `json:"created"`
}

type scriptRecord struct {
	Source  []byte    `json:"source"`
	Owner   string    `json:"owner,omitempty"` // "": the admin
	Created time.Time `json:"created"`
}

type joinTokenRecord struct {
	SecretHash []byte    `json:"secret_hash"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`        // zero: never
	Uses       int       `json:"uses,omitempty"` // 0: no limit (tokens made before uses were counted)
	Used       int       `json:"used,omitempty"`
}

// agentRecord's fields after last_seen came later without a new schema
// version: absent means zero (nothing set by an operator, join memory
// unknown).
type agentRecord struct {
	Name           string    `json:"name"`
	CredentialHash []byte    `json:"credential_hash"`
	Labels         []string  `json:"labels"`
	Created        time.Time `json:"created"`
	LastSeen       time.Time `json:"last_seen"`
	JoinMemBytes   uint64    `json:"join_mem_bytes,omitempty"`
	Cordoned       bool      `json:"cordoned,omitempty"`
	OperatorLabels []string  `json:"operator_labels,omitempty"`
	MemCapBytes    uint64    `json:"mem_cap_bytes,omitempty"`
}

// OpenEmbedded opens (creating if needed) the store file at path. A new file
// gets the buckets above and the default module; a file of an older schema
// version is upgraded in place.
//
// # Notes
//
// An upgraded file can no longer be opened by the older Wisp that wrote it
// (it refuses newer files), so keep a copy before upgrading if a downgrade
// may be needed.
//
// # Errors
//
// ErrLocked when another process holds the file for longer than a second; an
// error naming the versions when the file was written by a newer Wisp; any
// I/O or bbolt error.
func OpenEmbedded(path string, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: embeddedLockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w (waited %s)", path, ErrLocked, embeddedLockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var found uint64 // the version before opening; 0: a new file
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		if found, err = initEmbedded(tx); err != nil {
			return err
		}
		for _, b := range additiveBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %q: %w", b, err)
			}
		}
		return createSecretsBucket(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	switch {
	case found == 0:
		log.Info("created embedded store", "path", path, "schema_version", embeddedVersion)
	case found < embeddedVersion:
		log.Info("upgraded embedded store", "path", path, "from_schema_version", found, "schema_version", embeddedVersion)
	}
	return &Embedded{db: db, log: log}, nil
}

// initEmbedded lays out a new file, or checks an existing one's version,
// upgrades it to embeddedVersion if it is older, and checks its buckets. It
// returns the version it found, 0 for a new file.
func initEmbedded(tx *bolt.Tx) (uint64, error) {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		v := meta.Get(keyVersion)
		if len(v) != 8 {
			return 0, errors.New("meta/version is missing or malformed")
		}
		found := binary.BigEndian.Uint64(v)
		switch {
		case found == 0:
			return 0, errors.New("meta/version is 0")
		case found > embeddedVersion:
			return 0, fmt.Errorf("schema version %d was written by a newer Wisp; this one knows version %d", found, embeddedVersion)
		}
		for v := found; v < embeddedVersion; v++ {
			if err := embeddedUpgrades[v-1](tx); err != nil {
				return 0, fmt.Errorf("upgrade schema version %d to %d: %w", v, v+1, err)
			}
		}
		if found < embeddedVersion {
			if err := meta.Put(keyVersion, u64(embeddedVersion)); err != nil {
				return 0, err
			}
		}
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return 0, fmt.Errorf("bucket %q is missing", b)
			}
		}
		return found, nil
	}
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		return fmt.Errorf("the file holds bucket %q but no meta bucket: it is not a Wisp store", name)
	}); err != nil {
		return 0, err
	}
	if err := createBuckets(tx, allBuckets...); err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketMeta).Put(keyVersion, u64(embeddedVersion)); err != nil {
		return 0, err
	}
	return 0, createModule(tx, DefaultModule, "")
}

func u64(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}

func readU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// view and update run fn in a transaction unless ctx is already done (bbolt
// itself takes no context).
func (e *Embedded) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.View(fn)
}

// viewOne reads one record by key with get in a read transaction; what
// names it in errors ("get script %q").
func viewOne[T any](ctx context.Context, e *Embedded, key string, get func(*bolt.Tx, []byte) (T, error), what string) (T, error) {
	var v T
	err := e.view(ctx, func(tx *bolt.Tx) error {
		var err error
		v, err = get(tx, []byte(key))
		return err
	})
	if err != nil {
		var zero T
		return zero, boltFail(err, what, key)
	}
	return v, nil
}

func (e *Embedded) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	return e.updateThen(ctx, fn, nil)
}

// updateThen is update, then, once fn's transaction committed, reports
// the changes report returns (nil: none) to the change feed's watchers.
func (e *Embedded) updateThen(ctx context.Context, fn func(*bolt.Tx) error, report func() []Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if err := e.db.Update(fn); err != nil {
		return err
	}
	if report != nil {
		e.changes.changed(report()...)
	}
	return nil
}

// one is a report of a single change.
func one(kind ChangeKind, key string) func() []Change {
	return func() []Change { return []Change{{Kind: kind, Key: key}} }
}

// boltFail wraps err with what the call was doing.
func boltFail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", fmt.Sprintf(format, args...), err)
}

// moduleBucket returns the functions bucket of a module, or ErrNotFound.
func moduleBucket(tx *bolt.Tx, module string) (*bolt.Bucket, error) {
	id := tx.Bucket(bucketModules).Get([]byte(module))
	if id == nil {
		return nil, ErrNotFound
	}
	b := tx.Bucket(bucketFunctions).Bucket(id)
	if b == nil {
		return nil, fmt.Errorf("module %q has id %d but no functions bucket", module, readU64(id))
	}
	return b, nil
}

func createModule(tx *bolt.Tx, name, owner string) error {
	modules := tx.Bucket(bucketModules)
	if modules.Get([]byte(name)) != nil {
		return ErrExists
	}
	if err := ownerExists(tx, owner); err != nil {
		return err
	}
	id, err := modules.NextSequence()
	if err != nil {
		return err
	}
	if err := modules.Put([]byte(name), u64(id)); err != nil {
		return err
	}
	if owner != "" {
		if err := tx.Bucket(bucketModuleOwners).Put(u64(id), []byte(owner)); err != nil {
			return err
		}
	}
	_, err = tx.Bucket(bucketFunctions).CreateBucket(u64(id))
	return err
}

// ownerExists is nil when owner is the admin ("") or a subject, and
// ErrNotFound otherwise.
func ownerExists(tx *bolt.Tx, owner string) error {
	if owner != "" && tx.Bucket(bucketSubjects).Get([]byte(owner)) == nil {
		return ErrNotFound
	}
	return nil
}

// moduleOwner returns the owner of the module with id ("": the admin).
func moduleOwner(tx *bolt.Tx, id []byte) string {
	return string(tx.Bucket(bucketModuleOwners).Get(id))
}

// addCodeRef records one more function using digest, storing code if it is
// the first.
func addCodeRef(tx *bolt.Tx, digest string, code []byte) error {
	refs := tx.Bucket(bucketCodeRefs)
	n := readU64(refs.Get([]byte(digest)))
	if n == 0 {
		if err := tx.Bucket(bucketCode).Put([]byte(digest), code); err != nil {
			return err
		}
	}
	return refs.Put([]byte(digest), u64(n+1))
}

// dropCodeRef records one function fewer using digest, deleting the code
// with the last reference.
func dropCodeRef(tx *bolt.Tx, digest string) error {
	refs := tx.Bucket(bucketCodeRefs)
	n := readU64(refs.Get([]byte(digest)))
	switch n {
	case 0:
		return fmt.Errorf("code %s has no reference to drop", digest)
	case 1:
		if err := tx.Bucket(bucketCode).Delete([]byte(digest)); err != nil {
			return err
		}
		return refs.Delete([]byte(digest))
	default:
		return refs.Put([]byte(digest), u64(n-1))
	}
}

func getFunction(b *bolt.Bucket, module, name string) (Function, error) {
	v := b.Get([]byte(name))
	if v == nil {
		return Function{}, ErrNotFound
	}
	var r functionRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Function{}, fmt.Errorf("decode function record: %w", err)
	}
	fn := Function{
		Module: module, Name: name, Digest: r.Digest, Size: r.Size, ABI: r.ABI,
		Created: r.Created.UTC(), Updated: r.Updated.UTC(),
	}
	fn.Spec, fn.Unreadable = decodeSpec(r.Events, r.Sinks, r.Metadata, r.Config)
	return fn, nil
}

func putFunction(b *bolt.Bucket, fn Function) error {
	events, sinks, metadata, config := fn.Spec.Encode()
	v, err := json.Marshal(functionRecord{
		Digest: fn.Digest, Size: fn.Size, ABI: fn.ABI,
		Events: events, Sinks: sinks, Metadata: metadata, Config: config,
		Created: fn.Created, Updated: fn.Updated,
	})
	if err != nil {
		return err
	}
	return b.Put([]byte(fn.Name), v)
}

// ListModules implements Store.
func (e *Embedded) ListModules(ctx context.Context) ([]Module, error) {
	ms := []Module{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketModules).ForEach(func(k, id []byte) error {
			ms = append(ms, Module{Name: string(k), Owner: moduleOwner(tx, id)})
			return nil
		})
	})
	if err != nil {
		return nil, boltFail(err, "list modules")
	}
	return ms, nil
}

// CreateModule implements Store.
func (e *Embedded) CreateModule(ctx context.Context, name, owner string) error {
	err := e.updateThen(ctx, func(tx *bolt.Tx) error { return createModule(tx, name, owner) }, one(ChangeModules, name))
	return boltFail(err, "create module %q", name)
}

// ModuleOwner implements Store.
func (e *Embedded) ModuleOwner(ctx context.Context, name string) (string, error) {
	var owner string
	err := e.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketModules).Get([]byte(name))
		if id == nil {
			return ErrNotFound
		}
		owner = moduleOwner(tx, id)
		return nil
	})
	if err != nil {
		return "", boltFail(err, "owner of module %q", name)
	}
	return owner, nil
}

// GetModule implements Store.
func (e *Embedded) GetModule(ctx context.Context, name string) (Module, error) {
	m := Module{Name: name, Functions: []string{}}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		b, err := moduleBucket(tx, name)
		if err != nil {
			return err
		}
		m.Owner = moduleOwner(tx, tx.Bucket(bucketModules).Get([]byte(name)))
		return b.ForEach(func(k, _ []byte) error {
			m.Functions = append(m.Functions, string(k))
			return nil
		})
	})
	if err != nil {
		return Module{}, boltFail(err, "get module %q", name)
	}
	return m, nil
}

// RenameModule implements Store.
func (e *Embedded) RenameModule(ctx context.Context, from, to string) error {
	if from == DefaultModule || to == DefaultModule {
		return fmt.Errorf("store: rename module %q to %q: %w", from, to, ErrDefaultModule)
	}
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		modules := tx.Bucket(bucketModules)
		id := bytes.Clone(modules.Get([]byte(from)))
		switch {
		case id == nil:
			return ErrNotFound
		case from == to:
			return nil
		case modules.Get([]byte(to)) != nil:
			return ErrExists
		}
		if err := modules.Delete([]byte(from)); err != nil {
			return err
		}
		return modules.Put([]byte(to), id)
	}, func() []Change {
		if from == to {
			return nil
		}
		return []Change{{Kind: ChangeModules, Key: from}, {Kind: ChangeModules, Key: to}}
	})
	return boltFail(err, "rename module %q to %q", from, to)
}

// DeleteModule implements Store.
func (e *Embedded) DeleteModule(ctx context.Context, name string) error {
	if name == DefaultModule {
		return fmt.Errorf("store: delete module %q: %w", name, ErrDefaultModule)
	}
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		modules := tx.Bucket(bucketModules)
		id := bytes.Clone(modules.Get([]byte(name)))
		if id == nil {
			return ErrNotFound
		}
		b, err := moduleBucket(tx, name)
		if err != nil {
			return err
		}
		var digests []string
		if err := b.ForEach(func(k, v []byte) error {
			var r functionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode function %q: %w", k, err)
			}
			digests = append(digests, r.Digest)
			return nil
		}); err != nil {
			return err
		}
		for _, d := range digests {
			if err := dropCodeRef(tx, d); err != nil {
				return err
			}
		}
		if err := deleteVersions(tx, id, ""); err != nil {
			return err
		}
		if err := tx.Bucket(bucketFunctions).DeleteBucket(id); err != nil {
			return err
		}
		if err := tx.Bucket(bucketModuleOwners).Delete(id); err != nil {
			return err
		}
		if err := deleteModuleSecrets(tx, id); err != nil {
			return err
		}
		return modules.Delete([]byte(name))
	}, one(ChangeModules, name))
	return boltFail(err, "delete module %q", name)
}

// CreateFunction implements Store.
func (e *Embedded) CreateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	fn, err := prepareFunction(fn, code)
	if err != nil {
		return Function{}, err
	}
	fn.Created = now()
	fn.Updated = fn.Created
	err = e.updateThen(ctx, func(tx *bolt.Tx) error {
		b, err := moduleBucket(tx, fn.Module)
		if err != nil {
			return err
		}
		if b.Get([]byte(fn.Name)) != nil {
			return ErrExists
		}
		if err := addCodeRef(tx, fn.Digest, code); err != nil {
			return err
		}
		return putFunction(b, fn)
	}, one(ChangeFunctions, fn.Module+"/"+fn.Name))
	if err != nil {
		return Function{}, boltFail(err, "create function %s/%s", fn.Module, fn.Name)
	}
	return fn, nil
}

// UpdateFunction implements Store.
func (e *Embedded) UpdateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	fn, err := prepareFunction(fn, code)
	if err != nil {
		return Function{}, err
	}
	var prev Function
	err = e.updateThen(ctx, func(tx *bolt.Tx) error {
		b, err := moduleBucket(tx, fn.Module)
		if err != nil {
			return err
		}
		if prev, err = getFunction(b, fn.Module, fn.Name); err != nil {
			return err
		}
		fn.Created, fn.Updated = prev.Created, now()
		// Add before dropping, so that keeping the same digest never
		// deletes it; the versions take their references first too.
		if err := addCodeRef(tx, fn.Digest, code); err != nil {
			return err
		}
		if err := recordVersion(tx, fn.Module, prev, fn, code); err != nil {
			return err
		}
		if err := dropCodeRef(tx, prev.Digest); err != nil {
			return err
		}
		return putFunction(b, fn)
	}, one(ChangeFunctions, fn.Module+"/"+fn.Name))
	if err != nil {
		return Function{}, boltFail(err, "update function %s/%s", fn.Module, fn.Name)
	}
	return prev, nil
}

// GetFunction implements Store.
func (e *Embedded) GetFunction(ctx context.Context, module, name string) (Function, error) {
	var fn Function
	err := e.view(ctx, func(tx *bolt.Tx) error {
		b, err := moduleBucket(tx, module)
		if err != nil {
			return err
		}
		fn, err = getFunction(b, module, name)
		return err
	})
	if err != nil {
		return Function{}, boltFail(err, "get function %s/%s", module, name)
	}
	return fn, nil
}

// ListFunctions implements Store.
func (e *Embedded) ListFunctions(ctx context.Context) ([]Function, error) {
	fns := []Function{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketModules).ForEach(func(module, _ []byte) error {
			b, err := moduleBucket(tx, string(module))
			if err != nil {
				return err
			}
			return b.ForEach(func(name, _ []byte) error {
				fn, err := getFunction(b, string(module), string(name))
				fns = append(fns, fn)
				return err
			})
		})
	})
	if err != nil {
		return nil, boltFail(err, "list functions")
	}
	return fns, nil
}

// DeleteFunction implements Store.
func (e *Embedded) DeleteFunction(ctx context.Context, module, name string) (Function, error) {
	var fn Function
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		b, err := moduleBucket(tx, module)
		if err != nil {
			return err
		}
		if fn, err = getFunction(b, module, name); err != nil {
			return err
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		if err := deleteVersions(tx, tx.Bucket(bucketModules).Get([]byte(module)), name); err != nil {
			return err
		}
		return dropCodeRef(tx, fn.Digest)
	}, one(ChangeFunctions, module+"/"+name))
	if err != nil {
		return Function{}, boltFail(err, "delete function %s/%s", module, name)
	}
	return fn, nil
}

// Code implements Store.
func (e *Embedded) Code(ctx context.Context, digest string) ([]byte, error) {
	var code []byte
	err := e.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCode).Get([]byte(digest))
		if v == nil {
			return ErrNotFound
		}
		code = bytes.Clone(v) // v is only valid inside the transaction
		return nil
	})
	if err != nil {
		return nil, boltFail(err, "code %s", digest)
	}
	return code, nil
}

// HasCode reports whether the code of a digest is stored, without reading
// it (CodeChecker).
func (e *Embedded) HasCode(ctx context.Context, digest string) (bool, error) {
	var ok bool
	err := e.view(ctx, func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketCode).Get([]byte(digest)) != nil
		return nil
	})
	if err != nil {
		return false, boltFail(err, "code %s", digest)
	}
	return ok, nil
}

// CodeCount returns how many distinct code blobs are stored. It is not part
// of Store; tests use it to check that code is kept once per digest and
// dropped when unused.
func (e *Embedded) CodeCount(ctx context.Context) (int, error) {
	n := 0
	err := e.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCode).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, boltFail(err, "count code")
	}
	return n, nil
}

// CreateSubject implements Store.
func (e *Embedded) CreateSubject(ctx context.Context, s Subject) (Subject, error) {
	s.Created = now()
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		subjects, tokens := tx.Bucket(bucketSubjects), tx.Bucket(bucketTokens)
		if subjects.Get([]byte(s.Name)) != nil || tokens.Get(s.TokenHash) != nil {
			return ErrExists
		}
		v, err := json.Marshal(subjectRecord{TokenHash: s.TokenHash, Admin: s.Admin, Created: s.Created})
		if err != nil {
			return err
		}
		if err := subjects.Put([]byte(s.Name), v); err != nil {
			return err
		}
		return tokens.Put(s.TokenHash, []byte(s.Name))
	}, one(ChangeSubjects, s.Name))
	if err != nil {
		return Subject{}, boltFail(err, "create subject %q", s.Name)
	}
	return s, nil
}

func getSubject(tx *bolt.Tx, name []byte) (Subject, error) {
	v := tx.Bucket(bucketSubjects).Get(name)
	if v == nil {
		return Subject{}, ErrNotFound
	}
	var r subjectRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Subject{}, fmt.Errorf("decode subject %q: %w", name, err)
	}
	return Subject{Name: string(name), TokenHash: r.TokenHash, Admin: r.Admin, Created: r.Created.UTC()}, nil
}

// ListSubjects implements Store.
func (e *Embedded) ListSubjects(ctx context.Context) ([]Subject, error) {
	ss := []Subject{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSubjects).ForEach(func(k, _ []byte) error {
			s, err := getSubject(tx, k)
			ss = append(ss, s)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list subjects")
	}
	return ss, nil
}

// SubjectByTokenHash implements Store.
func (e *Embedded) SubjectByTokenHash(ctx context.Context, hash []byte) (Subject, error) {
	var s Subject
	err := e.view(ctx, func(tx *bolt.Tx) error {
		name := tx.Bucket(bucketTokens).Get(hash)
		if name == nil {
			return ErrNotFound
		}
		var err error
		s, err = getSubject(tx, name)
		return err
	})
	if err != nil {
		return Subject{}, boltFail(err, "subject by token")
	}
	return s, nil
}

// RotateSubjectToken implements Store.
func (e *Embedded) RotateSubjectToken(ctx context.Context, name string, hash []byte) error {
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		s, err := getSubject(tx, []byte(name))
		if err != nil {
			return err
		}
		tokens := tx.Bucket(bucketTokens)
		if holder := tokens.Get(hash); holder != nil {
			if string(holder) != name {
				return ErrExists
			}
			return nil // the same token again: nothing changes
		}
		if err := tokens.Delete(s.TokenHash); err != nil {
			return err
		}
		v, err := json.Marshal(subjectRecord{TokenHash: hash, Admin: s.Admin, Created: s.Created})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketSubjects).Put([]byte(name), v); err != nil {
			return err
		}
		return tokens.Put(hash, []byte(name))
	}, one(ChangeSubjects, name))
	return boltFail(err, "rotate the token of subject %q", name)
}

// DeleteSubject implements Store. It walks the module owners and the
// scripts (few), then every activation record (many: bounded by the
// retention) to give the subject's to the admin.
func (e *Embedded) DeleteSubject(ctx context.Context, name string) error {
	var scripts [][]byte // the subject's, deleted with it
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		scripts = nil
		s, err := getSubject(tx, []byte(name))
		if err != nil {
			return err
		}
		owns := func(_, v []byte) error {
			if string(v) == name {
				return ErrOwner
			}
			return nil
		}
		if err := tx.Bucket(bucketModuleOwners).ForEach(owns); err != nil {
			return err
		}
		if err := tx.Bucket(bucketScripts).ForEach(func(k, _ []byte) error {
			sc, err := getScript(tx, k)
			if err == nil && sc.Owner == name {
				scripts = append(scripts, bytes.Clone(k))
			}
			return err
		}); err != nil {
			return err
		}
		for _, k := range scripts {
			if err := tx.Bucket(bucketScripts).Delete(k); err != nil {
				return err
			}
		}
		if err := disownActivations(tx, name); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTokens).Delete(s.TokenHash); err != nil {
			return err
		}
		return tx.Bucket(bucketSubjects).Delete([]byte(name))
	}, func() []Change {
		cs := []Change{{Kind: ChangeSubjects, Key: name}}
		for _, k := range scripts {
			cs = append(cs, Change{Kind: ChangeScripts, Key: string(k)})
		}
		return cs
	})
	return boltFail(err, "delete subject %q", name)
}

// PutScript implements Store.
func (e *Embedded) PutScript(ctx context.Context, s Script) (Script, error) {
	s.Created = now()
	if s.Source == nil {
		s.Source = []byte{}
	}
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		scripts := tx.Bucket(bucketScripts)
		if scripts.Get([]byte(s.Name)) != nil {
			return ErrExists
		}
		if err := ownerExists(tx, s.Owner); err != nil {
			return err
		}
		v, err := json.Marshal(scriptRecord{Source: s.Source, Owner: s.Owner, Created: s.Created})
		if err != nil {
			return err
		}
		return scripts.Put([]byte(s.Name), v)
	}, one(ChangeScripts, s.Name))
	if err != nil {
		return Script{}, boltFail(err, "put script %q", s.Name)
	}
	return s, nil
}

func getScript(tx *bolt.Tx, name []byte) (Script, error) {
	v := tx.Bucket(bucketScripts).Get(name)
	if v == nil {
		return Script{}, ErrNotFound
	}
	var r scriptRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Script{}, fmt.Errorf("decode script %q: %w", name, err)
	}
	if r.Source == nil {
		r.Source = []byte{}
	}
	return Script{Name: string(name), Source: r.Source, Owner: r.Owner, Created: r.Created.UTC()}, nil
}

// GetScript implements Store.
func (e *Embedded) GetScript(ctx context.Context, name string) (Script, error) {
	return viewOne(ctx, e, name, getScript, "get script %q")
}

// ListScripts implements Store.
func (e *Embedded) ListScripts(ctx context.Context) ([]Script, error) {
	ss := []Script{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketScripts).ForEach(func(k, _ []byte) error {
			s, err := getScript(tx, k)
			ss = append(ss, s)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list scripts")
	}
	return ss, nil
}

// CreateJoinToken implements Store.
func (e *Embedded) CreateJoinToken(ctx context.Context, jt JoinToken) (JoinToken, error) {
	jt.Created = now()
	jt.Expires = storeTime(jt.Expires)
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		tokens, hashes := tx.Bucket(bucketJoinTokens), tx.Bucket(bucketJoinTokenHashes)
		if tokens.Get([]byte(jt.ID)) != nil || hashes.Get(jt.SecretHash) != nil {
			return ErrExists
		}
		jt.Used = 0
		if err := putJoinToken(tx, jt); err != nil {
			return err
		}
		return hashes.Put(jt.SecretHash, []byte(jt.ID))
	}, one(ChangeJoinTokens, jt.ID))
	if err != nil {
		return JoinToken{}, boltFail(err, "create join token %q", jt.ID)
	}
	return jt, nil
}

func putJoinToken(tx *bolt.Tx, jt JoinToken) error {
	v, err := json.Marshal(joinTokenRecord{SecretHash: jt.SecretHash, Created: jt.Created, Expires: jt.Expires, Uses: jt.Uses, Used: jt.Used})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketJoinTokens).Put([]byte(jt.ID), v)
}

// usableJoinToken finds the token of hash that may still be used.
func usableJoinToken(tx *bolt.Tx, hash []byte) (JoinToken, error) {
	id := tx.Bucket(bucketJoinTokenHashes).Get(hash)
	if id == nil {
		return JoinToken{}, ErrNotFound
	}
	jt, err := getJoinToken(tx, id)
	if err != nil {
		return JoinToken{}, err
	}
	if expired(jt.Expires, now()) || jt.UsedUp() {
		return JoinToken{}, ErrNotFound
	}
	return jt, nil
}

func getJoinToken(tx *bolt.Tx, id []byte) (JoinToken, error) {
	v := tx.Bucket(bucketJoinTokens).Get(id)
	if v == nil {
		return JoinToken{}, ErrNotFound
	}
	var r joinTokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return JoinToken{}, fmt.Errorf("decode join token %q: %w", id, err)
	}
	return JoinToken{ID: string(id), SecretHash: r.SecretHash, Created: r.Created.UTC(), Expires: storeTime(r.Expires), Uses: r.Uses, Used: r.Used}, nil
}

// JoinTokenByHash implements Store.
func (e *Embedded) JoinTokenByHash(ctx context.Context, hash []byte) (JoinToken, error) {
	var jt JoinToken
	err := e.view(ctx, func(tx *bolt.Tx) error {
		var err error
		jt, err = usableJoinToken(tx, hash)
		return err
	})
	if err != nil {
		return JoinToken{}, boltFail(err, "join token by hash")
	}
	return jt, nil
}

// JoinAgent implements Store.
func (e *Embedded) JoinAgent(ctx context.Context, hash []byte, a Agent) (Agent, error) {
	a = prepareAgent(a)
	var tokenID string
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		jt, err := usableJoinToken(tx, hash)
		if err != nil {
			return err
		}
		tokenID = jt.ID
		jt.Used++
		if err := putJoinToken(tx, jt); err != nil {
			return err
		}
		return createAgent(tx, a)
	}, func() []Change {
		return []Change{{Kind: ChangeJoinTokens, Key: tokenID}, {Kind: ChangeAgents, Key: a.ID}}
	})
	if err != nil {
		return Agent{}, boltFail(err, "join agent %q", a.ID)
	}
	return a, nil
}

// ListJoinTokens implements Store.
func (e *Embedded) ListJoinTokens(ctx context.Context) ([]JoinToken, error) {
	jts := []JoinToken{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJoinTokens).ForEach(func(k, _ []byte) error {
			jt, err := getJoinToken(tx, k)
			jts = append(jts, jt)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list join tokens")
	}
	// Keys are in id order and the sort is stable, so ties on Created keep it.
	slices.SortStableFunc(jts, func(a, b JoinToken) int { return a.Created.Compare(b.Created) })
	return jts, nil
}

// DeleteJoinToken implements Store.
func (e *Embedded) DeleteJoinToken(ctx context.Context, id string) error {
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		jt, err := getJoinToken(tx, []byte(id))
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketJoinTokenHashes).Delete(jt.SecretHash); err != nil {
			return err
		}
		return tx.Bucket(bucketJoinTokens).Delete([]byte(id))
	}, one(ChangeJoinTokens, id))
	return boltFail(err, "delete join token %q", id)
}

func putAgent(tx *bolt.Tx, a Agent) error {
	v, err := json.Marshal(agentRecord{Name: a.Name, CredentialHash: a.CredentialHash, Labels: a.Labels,
		Created: a.Created, LastSeen: a.LastSeen, JoinMemBytes: a.JoinMemBytes, Cordoned: a.Control.Cordoned,
		OperatorLabels: a.Control.Labels, MemCapBytes: a.Control.MemCapBytes})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketAgents).Put([]byte(a.ID), v)
}

func getAgent(tx *bolt.Tx, id []byte) (Agent, error) {
	v := tx.Bucket(bucketAgents).Get(id)
	if v == nil {
		return Agent{}, ErrNotFound
	}
	var r agentRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Agent{}, fmt.Errorf("decode agent %q: %w", id, err)
	}
	return Agent{ID: string(id), Name: r.Name, CredentialHash: r.CredentialHash, Labels: prepareLabels(r.Labels),
		Created: r.Created.UTC(), LastSeen: storeTime(r.LastSeen), JoinMemBytes: r.JoinMemBytes,
		Control: AgentControl{Cordoned: r.Cordoned, Labels: prepareLabels(r.OperatorLabels), MemCapBytes: r.MemCapBytes}}, nil
}

// CreateAgent implements Store.
func (e *Embedded) CreateAgent(ctx context.Context, a Agent) (Agent, error) {
	a = prepareAgent(a)
	err := e.updateThen(ctx, func(tx *bolt.Tx) error { return createAgent(tx, a) }, one(ChangeAgents, a.ID))
	if err != nil {
		return Agent{}, boltFail(err, "create agent %q", a.ID)
	}
	return a, nil
}

func createAgent(tx *bolt.Tx, a Agent) error {
	creds := tx.Bucket(bucketAgentCreds)
	if tx.Bucket(bucketAgents).Get([]byte(a.ID)) != nil || creds.Get(a.CredentialHash) != nil {
		return ErrExists
	}
	if err := putAgent(tx, a); err != nil {
		return err
	}
	return creds.Put(a.CredentialHash, []byte(a.ID))
}

// AgentByID implements Store.
func (e *Embedded) AgentByID(ctx context.Context, id string) (Agent, error) {
	return viewOne(ctx, e, id, getAgent, "agent %q")
}

// ListAgents implements Store.
func (e *Embedded) ListAgents(ctx context.Context) ([]Agent, error) {
	as := []Agent{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgents).ForEach(func(k, _ []byte) error {
			a, err := getAgent(tx, k)
			as = append(as, a)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list agents")
	}
	// Keys are in id order and the sort is stable, so ties on Name keep it.
	slices.SortStableFunc(as, func(a, b Agent) int { return strings.Compare(a.Name, b.Name) })
	return as, nil
}

// TouchAgent implements Store.
func (e *Embedded) TouchAgent(ctx context.Context, id string, name string, labels []string, seen time.Time) error {
	err := e.update(ctx, func(tx *bolt.Tx) error {
		a, err := getAgent(tx, []byte(id))
		if err != nil {
			return err
		}
		a.Name, a.Labels, a.LastSeen = name, prepareLabels(labels), storeTime(seen)
		return putAgent(tx, a)
	})
	return boltFail(err, "touch agent %q", id)
}

// SetAgentControl implements Store.
func (e *Embedded) SetAgentControl(ctx context.Context, id string, c AgentControl) (Agent, error) {
	var a Agent
	changed := false // as Postgres's trigger: only a change is reported
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		var err error
		if a, err = getAgent(tx, []byte(id)); err != nil {
			return err
		}
		c = prepareControl(c)
		changed = a.Control.Cordoned != c.Cordoned || a.Control.MemCapBytes != c.MemCapBytes || !slices.Equal(a.Control.Labels, c.Labels)
		a.Control = c
		return putAgent(tx, a)
	}, func() []Change {
		if !changed {
			return nil
		}
		return []Change{{Kind: ChangeAgents, Key: id}}
	})
	if err != nil {
		return Agent{}, boltFail(err, "set agent control %q", id)
	}
	return a, nil
}

// DeleteAgent implements Store.
func (e *Embedded) DeleteAgent(ctx context.Context, id string) error {
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		a, err := getAgent(tx, []byte(id))
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketAgentCreds).Delete(a.CredentialHash); err != nil {
			return err
		}
		return tx.Bucket(bucketAgents).Delete([]byte(id))
	}, one(ChangeAgents, id))
	if err == nil {
		e.members.dropAgent(id)
	}
	return boltFail(err, "delete agent %q", id)
}

// Ping checks that the file is open (Pinger): a read transaction, which
// bbolt refuses once the file is closed. It does no I/O.
func (e *Embedded) Ping(context.Context) error {
	if err := e.db.View(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Close closes the file, waiting for running transactions. Closing twice is
// harmless.
func (e *Embedded) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", e.db.Path(), err)
	}
	return nil
}
