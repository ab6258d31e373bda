package sinks

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestValidateParams(t *testing.T) {
	tests := []struct {
		name    string
		p       Params
		wantErr string // substring; "" means valid
		server  string
		db      string
		user    string
	}{
		{name: "plain", p: Params{URL: "http://couch:5984/results"}, server: "http://couch:5984", db: "results"},
		{name: "https with credentials fields", p: Params{URL: "https://couch.example/db1", Username: "u", Password: "p"}, server: "https://couch.example", db: "db1", user: "u"},
		{name: "trailing slash", p: Params{URL: "http://couch:5984/results/"}, server: "http://couch:5984", db: "results"},
		{name: "path prefix", p: Params{URL: "http://proxy/couch/results"}, server: "http://proxy/couch", db: "results"},
		{name: "credentials in url", p: Params{URL: "http://bob:pw@couch:5984/results"}, server: "http://couch:5984", db: "results", user: "bob"},
		{name: "fields win over url", p: Params{URL: "http://bob:pw@couch:5984/results", Username: "alice", Password: "x"}, server: "http://couch:5984", db: "results", user: "alice"},
		{name: "couchdb punctuation", p: Params{URL: "http://couch/a_b$c(d)e+f-g"}, server: "http://couch", db: "a_b$c(d)e+f-g"},
		{name: "empty", p: Params{}, wantErr: "missing"},
		{name: "no database", p: Params{URL: "http://couch:5984"}, wantErr: "no database name"},
		{name: "root only", p: Params{URL: "http://couch:5984/"}, wantErr: "no database name"},
		{name: "ftp scheme", p: Params{URL: "ftp://couch/db"}, wantErr: `scheme "ftp" is not http or https`},
		{name: "no scheme", p: Params{URL: "couch:5984/db"}, wantErr: "is not http or https"},
		{name: "no host", p: Params{URL: "http:///db"}, wantErr: "no host"},
		{name: "uppercase database", p: Params{URL: "http://couch/Results"}, wantErr: "not valid for CouchDB"},
		{name: "database starting with digit", p: Params{URL: "http://couch/1db"}, wantErr: "not valid for CouchDB"},
		{name: "query", p: Params{URL: "http://couch/db?x=1"}, wantErr: "query"},
		{name: "unparsable", p: Params{URL: "http://a b:5984/db\x7f"}, wantErr: "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateParams(tt.p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidParams) {
					t.Fatalf("ValidateParams(%v) = %v, want an ErrInvalidParams containing %q", tt.p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateParams(%v) = %v", tt.p, err)
			}
			tg, _ := tt.p.target()
			if tg.server != tt.server || tg.db != tt.db || tg.username != tt.user {
				t.Errorf("target = %+v, want server %q db %q user %q", tg, tt.server, tt.db, tt.user)
			}
		})
	}
}

// TestParamsRedacted checks every way Params can be shown.
func TestParamsRedacted(t *testing.T) {
	p := Params{URL: "http://bob:url-secret@couch:5984/db", Username: "alice", Password: "field-secret"}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "sink", p, "sinkp", &p)
	for name, s := range map[string]string{
		"String":                p.String(),
		"Redacted":              strings.Join([]string{p.Redacted().URL, p.Redacted().Password}, " "),
		"slog":                  logged.String(),
		"validation error":      errString(ValidateParams(Params{URL: "ftp://bob:url-secret@couch/db"})),
		"validation error (db)": errString(ValidateParams(Params{URL: "http://bob:url-secret@couch/"})),
	} {
		if strings.Contains(s, "secret") {
			t.Errorf("%s shows a password: %s", name, s)
		}
	}
	if got := p.Redacted(); got.Username != "alice" || got.Password != "xxxxx" || !strings.Contains(got.URL, "bob:xxxxx@couch") {
		t.Errorf("Redacted() = %+v", got)
	}
	if got := p.scrub("dial http://bob:url-secret@couch with field-secret"); strings.Contains(got, "secret") {
		t.Errorf("scrub left a password: %s", got)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
