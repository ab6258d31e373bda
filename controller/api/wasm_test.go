package api

import (
	"encoding/binary"
	"testing"
)

// padModule returns module with a custom section appended so that the
// result is exactly size bytes (a custom section is id 0, a LEB128 size, a
// name, then any bytes; loaders skip it). The padding is zeros.
func padModule(t testing.TB, module []byte, size int) []byte {
	t.Helper()
	const name = "wisp.padding"
	for payload := size - len(module) - 1 - 1 - len(name); payload >= 0; payload-- {
		content := 1 + len(name) + payload // name length byte, name, padding
		sizeLEB := binary.AppendUvarint(nil, uint64(content))
		if len(module)+1+len(sizeLEB)+content == size {
			out := make([]byte, 0, size)
			out = append(out, module...)
			out = append(out, 0)
			out = append(out, sizeLEB...)
			out = append(out, byte(len(name)))
			out = append(out, name...)
			return append(out, make([]byte, payload)...)
		}
	}
	t.Fatalf("cannot pad a %d-byte module to %d bytes", len(module), size)
	return nil
}
