package runtime

import "testing"

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
