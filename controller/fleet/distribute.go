package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// pushTimeout bounds one code push to one agent.
const pushTimeout = 30 * time.Second

// Stored pushes a new or updated function's code to every connected agent
// that lacks it, in parallel, so the first invocation is warm (FunLess's
// "store on create"). Failures are logged: an agent that missed a push
// pulls the code on its first invocation.
func (f *Fleet) Stored(ctx context.Context, fn store.Function, code []byte, wait bool) {
	var wg sync.WaitGroup
	for _, s := range f.Sessions() {
		if s.HasDigest(fn.Digest) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, pushTimeout)
			defer cancel()
			if err := s.Push(pctx, fn.Digest, code); err != nil {
				f.log.Warn("code push failed; the agent will pull it when needed", "agent", s.ID, "module", fn.Module, "function", fn.Name, "err", err)
				return
			}
			f.log.Debug("code pushed", "agent", s.ID, "module", fn.Module, "function", fn.Name, "digest", fn.Digest)
		}()
	}
	wg.Wait()
}

// JoinTokenInfo is a new join token (POST /v1/admin/tokens). Token is
// shown once.
type JoinTokenInfo struct {
	ID      string     `json:"id"`
	Token   string     `json:"token"`
	Expires *time.Time `json:"expires,omitempty"`
	Uses    int        `json:"uses"`
}

// DefaultJoinTokenTTL is how long a join token lasts when its maker does
// not say.
const DefaultJoinTokenTTL = 24 * time.Hour

// MaxJoinTokenUses bounds how many agents one join token may let in.
const MaxJoinTokenUses = 1_000_000

// CreateJoinToken makes a join token for new agents: it stores the hash
// of a fresh secret and returns the token text (the controller's key
// fingerprint and the secret). It lets uses agents join (uses < 1 means
// one); ttl <= 0 means DefaultJoinTokenTTL.
func (f *Fleet) CreateJoinToken(ctx context.Context, ttl time.Duration, uses int) (JoinTokenInfo, error) {
	return NewJoinToken(ctx, f.cfg.Store, f.cfg.Identity, ttl, uses)
}

// TokenStore is where join tokens are kept.
type TokenStore interface {
	CreateJoinToken(ctx context.Context, jt store.JoinToken) (store.JoinToken, error)
}

// NewJoinToken is CreateJoinToken without a running fleet (the
// `wisp-controller token create` command with the controller stopped).
func NewJoinToken(ctx context.Context, st TokenStore, id Identity, ttl time.Duration, uses int) (JoinTokenInfo, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	idb := make([]byte, 4)
	rand.Read(idb)
	sum := sha256.Sum256(secret)
	if ttl <= 0 {
		ttl = DefaultJoinTokenTTL
	}
	uses = max(uses, 1)
	jt := store.JoinToken{ID: "jt_" + hex.EncodeToString(idb), SecretHash: sum[:], Uses: uses, Expires: time.Now().Add(ttl)}
	jt, err := st.CreateJoinToken(ctx, jt)
	if err != nil {
		return JoinTokenInfo{}, err
	}
	info := JoinTokenInfo{ID: jt.ID, Token: protocol.JoinToken{Fingerprint: id.Fingerprint, Secret: secret}.String(), Uses: jt.Uses}
	if !jt.Expires.IsZero() {
		e := jt.Expires
		info.Expires = &e
	}
	return info, nil
}
