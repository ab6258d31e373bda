package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
)

// DefaultMaxUpload is the controller's default upload limit (16 MiB).
const DefaultMaxUpload = 16 << 20

// progressThreshold: uploads bigger than this show a progress bar on a terminal.
const progressThreshold = 4 << 20

var wasmMagic = []byte("\x00asm")

// readWasm reads a .wasm file after checking it exists, fits max and starts
// with the wasm magic, so that nothing bad is ever sent.
func readWasm(path string, max int64) ([]byte, error) {
	b, err := readLimited(path, max, "the upload limit")
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(b, wasmMagic) {
		return nil, fmt.Errorf("%s is not a wasm module (it does not start with the \\0asm magic)", path)
	}
	return b, nil
}

// readLimited reads a regular file of at most max bytes.
func readLimited(path string, max int64, limitName string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file %s does not exist", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s is %s, over %s of %s", path, humanBytes(st.Size()), limitName, humanBytes(max))
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %s of %s", path, limitName, humanBytes(max))
	}
	return b, nil
}

// uploadForm is the multipart body of function create/update.
type uploadForm struct {
	name                    string // empty: not sent (update)
	file                    string // path, for the part's file name
	code                    []byte
	events, sinks, metadata string // JSON text, empty: not sent
	config                  string // JSON text of --fn-config's file, empty: not sent
	wait                    bool
}

// maxConfigFile bounds --fn-config's file: a config's env is at most 32 KiB.
const maxConfigFile = 256 << 10

// readFunctionConfig reads --fn-config's file ("" : none) and checks that it holds a
// JSON object; the controller checks the rest.
func readFunctionConfig(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := readLimited(path, maxConfigFile, "the config file limit")
	if err != nil {
		return "", err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil || v == nil {
		return "", fmt.Errorf("--fn-config %s must hold a JSON object, e.g. {\"env\":{\"K\":\"V\"},\"allow_hosts\":[\"api.example.com\"]}", path)
	}
	return string(b), nil
}

// checkJSON fails when a JSON-in-a-field flag does not parse as the wanted kind.
func checkJSON(flag, text string, wantArray bool) error {
	if text == "" {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return fmt.Errorf("--%s is not valid JSON: %v", flag, err)
	}
	switch v.(type) {
	case []any:
		if wantArray {
			return nil
		}
	case map[string]any:
		if !wantArray {
			return nil
		}
	}
	if wantArray {
		return fmt.Errorf("--%s must be a JSON array, e.g. [{\"type\":...,\"params\":{...}}]", flag)
	}
	return fmt.Errorf("--%s must be a JSON object, e.g. {\"tag\":\"t\",\"capacity\":1024}", flag)
}

func (f uploadForm) encode() ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, kv := range [][2]string{{"name", f.name}, {"events", f.events}, {"sinks", f.sinks}, {"metadata", f.metadata}, {"config", f.config}} {
		if kv[1] != "" {
			if err := mw.WriteField(kv[0], kv[1]); err != nil {
				return nil, "", err
			}
		}
	}
	if f.wait {
		mw.WriteField("wait_for_workers", "true")
	}
	part, err := mw.CreateFormFile("code", filepath.Base(f.file))
	if err != nil {
		return nil, "", err
	}
	part.Write(f.code)
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// progress is the wrapper that draws an upload's progress bar when
// showProgress says so (a fresh bar for each controller tried), else nil.
func (a *app) progress(body []byte, label string) func(io.Reader) io.Reader {
	if !a.showProgress(len(body)) {
		return nil
	}
	return func(r io.Reader) io.Reader { return newProgress(r, a.stderr, label, int64(len(body))) }
}

// showProgress decides whether an upload of n bytes draws a progress bar:
// over 4 MiB and stderr a terminal, unless WISP_PROGRESS says always/never.
func (a *app) showProgress(n int) bool {
	switch strings.ToLower(a.getenv("WISP_PROGRESS")) {
	case "always", "1", "true":
		return true
	case "never", "0", "false":
		return false
	}
	return n > progressThreshold && isTerminal(a.stderr)
}

// progress is a reader that draws a bar on w as it is read.
type progress struct {
	r           io.Reader
	w           io.Writer
	label       string
	total, done int64
	shown       int // last percentage drawn, -1 before the first
}

func newProgress(r io.Reader, w io.Writer, label string, total int64) *progress {
	return &progress{r: r, w: w, label: label, total: total, shown: -1}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	pct := 100
	if p.total > 0 {
		pct = int(p.done * 100 / p.total)
	}
	if pct != p.shown {
		p.shown = pct
		const width = 30
		fill := pct * width / 100
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %s / %s", p.label,
			strings.Repeat("#", fill), strings.Repeat("-", width-fill), pct,
			humanBytes(p.done), humanBytes(p.total))
		if pct >= 100 {
			fmt.Fprintln(p.w)
		}
	}
	return n, err
}
