package sinks

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Params are the parameters of a CouchDB sink: a function's
// fnspec.SinkParams, converted (Params(p)), with the CouchDB rules. The database is the last path
// element of URL; what comes before it is the server (a path prefix is
// allowed, for a CouchDB behind a reverse proxy). Username and Password are
// optional; credentials written in URL (http://u:p@host/db) are used when
// the fields are empty.
//
// Params marshal to JSON with the password (the store must keep it); to show
// them to anyone, use [Params.Redacted]. String and LogValue are redacted.
type Params struct {
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// couchDBName is CouchDB's rule for database names, without "/" (the name is
// one path element here).
var couchDBName = regexp.MustCompile(`^[a-z][a-z0-9_$()+-]*$`)

// target is a validated Params: where to connect and as whom.
type target struct {
	server   string // scheme://host[:port][/prefix], no credentials
	db       string
	username string
	password string
}

// ValidateParams checks that p names a CouchDB database Wisp can write to:
// an http or https URL with a host and a valid database name as its last
// path element. It does no I/O.
//
// # Errors
//
// Every error wraps [ErrInvalidParams] and says what is wrong; none contains
// the password.
func ValidateParams(p Params) error {
	_, err := p.target()
	return err
}

func (p Params) target() (target, error) {
	invalid := func(format string, args ...any) (target, error) {
		return target{}, fmt.Errorf("%w: url %s: %s", ErrInvalidParams, redactURL(p.URL), fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(p.URL) == "" {
		return invalid("missing (want http://host:5984/database)")
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return invalid("not a URL") // url.Parse's message would repeat the URL with its password
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return invalid("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return invalid("a query or fragment is not allowed")
	}
	path := strings.TrimSuffix(u.Path, "/")
	i := strings.LastIndexByte(path, '/')
	if i < 0 || path[i+1:] == "" {
		return invalid("no database name as the last path element (want http://host:5984/database)")
	}
	db := path[i+1:]
	if len(db) > 238 || !couchDBName.MatchString(db) {
		return invalid("database name %q is not valid for CouchDB (a lowercase letter, then lowercase letters, digits or _$()+-, at most 238 characters)", db)
	}
	t := target{db: db, username: p.Username, password: p.Password}
	if u.User != nil && t.username == "" && t.password == "" {
		t.username = u.User.Username()
		t.password, _ = u.User.Password()
	}
	server := url.URL{Scheme: u.Scheme, Host: u.Host, Path: path[:i]}
	t.server = server.String()
	return t, nil
}

// Redacted returns p with the password, in the field and in the URL,
// replaced by "xxxxx". It is what the API shows and what logs may carry.
func (p Params) Redacted() Params {
	r := Params{URL: redactURL(p.URL), Username: p.Username}
	if p.Password != "" {
		r.Password = "xxxxx"
	}
	return r
}

// String is the redacted URL.
func (p Params) String() string { return redactURL(p.URL) }

// LogValue makes slog print p redacted.
func (p Params) LogValue() slog.Value { return slog.StringValue(p.String()) }

// redactURL hides the password of a URL; a string that does not parse is
// replaced entirely, as it may hold anything.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}

// scrub removes the credentials of p from msg, whichever way they reached it.
func (p Params) scrub(msg string) string {
	secrets := []string{p.Password}
	if u, err := url.Parse(p.URL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
		secrets = append(secrets, u.User.String())
	}
	for _, s := range secrets {
		if len(s) > 0 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
