package store

import "context"

// ChangeKind names what a committed change touched. A controller reacts to
// a kind as a whole (re-read, re-sync); Change.Key narrows it for caches.
type ChangeKind string

// The kinds of changes a ChangeFeed reports (issue 15: several controllers
// on one Postgres learn each other's changes from it; issue 16: in-memory
// caches of tokens and functions are invalidated by it).
const (
	// ChangeAll: anything may have changed (the feed reconnected and may
	// have missed notifications, or a periodic reconcile): re-read all.
	ChangeAll ChangeKind = "all"
	// ChangeFunctions: a function was created, updated (code, settings,
	// config, a rollback), or deleted. Key: "module/name".
	ChangeFunctions ChangeKind = "functions"
	// ChangeModules: a module was created, renamed or deleted (with its
	// functions: a ChangeFunctions may not follow for each). Key: the name.
	ChangeModules ChangeKind = "modules"
	// ChangeScripts: an APP script was created or deleted. Key: the name.
	ChangeScripts ChangeKind = "scripts"
	// ChangeSubjects: a subject was created or deleted or its token
	// rotated. Key: the subject's name.
	ChangeSubjects ChangeKind = "subjects"
	// ChangeJoinTokens: a join token was created, spent or deleted. Key: its id.
	ChangeJoinTokens ChangeKind = "join_tokens"
	// ChangeAgents: an agent joined, was removed, or what operators set on
	// it changed (cordon, labels, cap). Not sent for LastSeen or name and
	// label reports (TouchAgent). Key: the agent id.
	ChangeAgents ChangeKind = "agents"
	// ChangeSecrets: a secret was set or deleted. Key: "module/name".
	ChangeSecrets ChangeKind = "secrets"
)

// Change is one committed change, as every controller on the store sees it
// (the one that made it included).
type Change struct {
	Kind ChangeKind
	// Key narrows Kind (see each kind); "" means any of that kind.
	Key string
}

// ChangeFeed is a store that reports committed changes to every controller
// using it. Postgres delivers them with LISTEN/NOTIFY from triggers on its
// tables, so a change made through any controller (or by hand in SQL)
// reaches all; the embedded store reports its own commits in process.
//
// WatchChanges calls fn for each change, in commit order per connection,
// until ctx is done, and returns ctx's error. Notifications can be lost
// when the feed's connection breaks: after every (re)connection it first
// calls fn with ChangeAll, so a watcher never misses a change without
// being told to re-read. fn must not block for long (it holds up the
// feed); changes that come while fn runs are delivered after it returns.
type ChangeFeed interface {
	WatchChanges(ctx context.Context, fn func(Change)) error
}
