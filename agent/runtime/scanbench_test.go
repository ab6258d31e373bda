package runtime

import (
	"testing"

	"github.com/tetratelabs/wazero"
)

func BenchmarkScan(b *testing.B) {
	for _, name := range []string{"hello_c", "hello_rust", "hello_go"} {
		code := fixture(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(code)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Scan(code, ModuleLimits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInspect: upload validation (Inspect: Scan, then compile with
// the interpreter and check the ABI) against wazero's interpreter compile
// alone, which is what validation cost before the static limits.
func BenchmarkInspect(b *testing.B) {
	for _, name := range []string{"hello_c", "hello_rust", "hello_go"} {
		code := fixture(b, name)
		b.Run(name+"/inspect", func(b *testing.B) {
			in := NewInspector(InspectConfig{})
			for i := 0; b.Loop(); i++ {
				if _, err := in.Inspect(b.Context(), code); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/compile-only", func(b *testing.B) {
			rt := wazero.NewRuntimeWithConfig(b.Context(), runtimeConfig(EngineInterpreter, nil))
			defer rt.Close(b.Context())
			for b.Loop() {
				cm, err := rt.CompileModule(b.Context(), code)
				if err != nil {
					b.Fatal(err)
				}
				cm.Close(b.Context())
			}
		})
	}
}
