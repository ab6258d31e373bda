package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testenv"
)

func TestCheck(t *testing.T) {
	if err := Check(context.Background(), Params{URL: "ftp://x/db"}); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("bad params: %v", err)
	}
	err := Check(context.Background(), Params{URL: "http://127.0.0.1:1/db", Password: "s3cret"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("closed port: %v", err)
	}
	base := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	testenv.TCP(t, "CouchDB (pouchdb-server)", strings.TrimPrefix(base, "http://"), "run make services")
	db := "wisp_check_" + strings.ToLower(randSuffix())
	if err := Check(context.Background(), Params{URL: base + "/" + db}); err != nil {
		t.Fatalf("reachable server: %v", err)
	}
	if err := Check(context.Background(), Params{URL: base + "/" + db}); err != nil {
		t.Fatalf("existing database: %v", err)
	}
}

func randSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
