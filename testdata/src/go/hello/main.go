// Command hello builds hello_go.wasm, a Wisp test fixture implementing the
// FunLess Wasm function ABI v1 as a WASI reactor (go build -buildmode=c-shared,
// GOOS=wasip1 GOARCH=wasm). The host must call _initialize before __invoke.
//
// Input {"name":"Ada"} gives {"payload":"Hello Ada!"}; without a string
// "name" the output is {"payload":"Hello World!"}; input that is not a JSON
// object is reported with __insert_error and __invoke returns 1. Every call
// also logs the line "hello from go" through __console_log.
//
// This directory is its own module (wispfixtures/hello) so that the main
// module's ./... never builds it.
package main

import (
	"encoding/json"
	"unsafe"
)

//go:wasmimport fl_imps __get_input_data
func getInputData(ptr unsafe.Pointer)

//go:wasmimport fl_imps __insert_response
func insertResponse(ptr unsafe.Pointer, n uint32)

//go:wasmimport fl_imps __insert_error
func insertError(ptr unsafe.Pointer, n uint32)

//go:wasmimport fl_imps __console_log
func consoleLog(ptr unsafe.Pointer, n uint32)

func send(f func(unsafe.Pointer, uint32), b []byte) {
	if len(b) == 0 {
		f(nil, 0)
		return
	}
	f(unsafe.Pointer(&b[0]), uint32(len(b)))
}

type request struct {
	Name json.RawMessage `json:"name"`
}

type response struct {
	Payload string `json:"payload"`
}

//go:wasmexport __invoke
func invoke(inputLen int32) int32 {
	send(consoleLog, []byte("hello from go"))

	if inputLen < 0 {
		inputLen = 0
	}
	in := make([]byte, inputLen)
	if inputLen > 0 {
		getInputData(unsafe.Pointer(&in[0]))
	}

	var req request
	if err := json.Unmarshal(in, &req); err != nil {
		send(insertError, []byte("invalid input: "+err.Error()))
		return 1
	}
	name := "World"
	var s string
	if len(req.Name) > 0 && json.Unmarshal(req.Name, &s) == nil {
		name = s
	}

	out, err := json.Marshal(response{Payload: "Hello " + name + "!"})
	if err != nil {
		send(insertError, []byte(err.Error()))
		return 1
	}
	send(insertResponse, out)
	return 0
}

func main() {}
