package main

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"debug/dwarf"
	"debug/elf"
	"encoding/csv"
	"encoding/gob"
	"encoding/json"
	"encoding/xml"
	"go/ast"
	"go/build"
	"go/doc"
	"go/format"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	htmltemplate "html/template"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"log/slog"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/rpc"
	"net/smtp"
	"regexp"
	"text/template"
	"unsafe"
)

//go:wasmimport fl_imps __get_input_data
func getInputData(ptr unsafe.Pointer)

//go:wasmimport fl_imps __insert_response
func insertResponse(ptr unsafe.Pointer, n uint32)

var sink = []any{
	zip.NewWriter, gzip.NewWriter, tls.Client, x509.ParseCertificate, xml.Marshal,
	format.Source, importer.Default, parser.ParseFile, token.NewFileSet, types.NewPackage, ast.Print,
	htmltemplate.New, image.NewRGBA, gif.Encode, jpeg.Encode, png.Encode, big.NewInt,
	http.NewRequest, httptest.NewRecorder, regexp.MustCompile, template.New, (&types.Config{}).Check,
	sql.Open, doc.New, mail.ParseAddress, smtp.Dial, csv.NewReader, multipart.NewReader, slog.New, elf.NewFile, dwarf.New, rpc.NewServer, build.Import, gob.NewEncoder,
}

//go:wasmexport __invoke
func invoke(n int32) int32 {
	in := make([]byte, n+1)
	if n > 0 {
		getInputData(unsafe.Pointer(&in[0]))
	}
	out, _ := json.Marshal(map[string]any{"funcs": len(sink)})
	var buf bytes.Buffer
	buf.Write(out)
	b := buf.Bytes()
	insertResponse(unsafe.Pointer(&b[0]), uint32(len(b)))
	return 0
}

func main() {}
