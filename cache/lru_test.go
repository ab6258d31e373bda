package cache

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestLRU(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		adds      []string // key=cost pairs as "k:c"
		gets      []string
		wantKeys  []string
		wantEvict []string
	}{
		{name: "entry bound evicts oldest", limits: Limits{Entries: 2},
			adds: []string{"a:1", "b:1", "c:1"}, wantKeys: []string{"c", "b"}, wantEvict: []string{"a"}},
		{name: "get refreshes recency", limits: Limits{Entries: 2},
			adds: []string{"a:1", "b:1"}, gets: []string{"a"}, wantKeys: []string{"a", "b"}},
		{name: "cost bound evicts until under", limits: Limits{Cost: 10},
			adds: []string{"a:5", "b:5", "c:6"}, wantKeys: []string{"c"}, wantEvict: []string{"a", "b"}},
		{name: "too costly is refused", limits: Limits{Cost: 10},
			adds: []string{"a:4", "huge:11"}, wantKeys: []string{"a"}},
		{name: "replace passes old value to onEvict", limits: Limits{Entries: 5},
			adds: []string{"a:1", "a:2"}, wantKeys: []string{"a"}, wantEvict: []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evicted []string
			c := NewLRU[string, int](tt.limits, func(k string, _ int) { evicted = append(evicted, k) })
			for _, a := range tt.adds {
				k, c0, _ := strings.Cut(a, ":")
				cost, err := strconv.ParseInt(c0, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				c.Add(k, int(cost), cost)
			}
			for _, g := range tt.gets {
				if _, ok := c.Get(g); !ok {
					t.Fatalf("Get(%q) missed", g)
				}
			}
			if got := c.Keys(); !slices.Equal(got, tt.wantKeys) {
				t.Errorf("keys = %v, want %v", got, tt.wantKeys)
			}
			if !slices.Equal(evicted, tt.wantEvict) {
				t.Errorf("evicted = %v, want %v", evicted, tt.wantEvict)
			}
			var cost int64
			for _, k := range c.Keys() {
				v, _ := c.Peek(k)
				cost += int64(v)
			}
			if s := c.Stats(); s.Cost != cost || s.Entries != len(tt.wantKeys) {
				t.Errorf("stats = %+v, want cost %d entries %d", s, cost, len(tt.wantKeys))
			}
		})
	}
}

func TestLRURemovePurge(t *testing.T) {
	var evicted []int
	c := NewLRU[int, int](Limits{}, func(_ int, v int) { evicted = append(evicted, v) })
	for i := range 5 {
		c.Add(i, i*10, 1)
	}
	if !c.Remove(2) || c.Remove(2) {
		t.Fatal("Remove should report presence exactly once")
	}
	c.Purge()
	slices.Sort(evicted)
	if want := []int{0, 10, 20, 30, 40}; !slices.Equal(evicted, want) {
		t.Fatalf("evicted %v, want %v", evicted, want)
	}
	if s := c.Stats(); s.Entries != 0 || s.Cost != 0 {
		t.Fatalf("after purge: %+v", s)
	}
	if _, ok := c.Get(1); ok {
		t.Fatal("Get after Purge hit")
	}
	if s := c.Stats(); s.Misses != 1 {
		t.Fatalf("misses = %d, want 1", s.Misses)
	}
}

func TestLRUConcurrent(t *testing.T) {
	c := NewLRU[int, int](Limits{Entries: 64, Cost: 1000}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := (i * (g + 1)) % 200
				if v, ok := c.Get(k); ok && v != k {
					t.Errorf("Get(%d) = %d", k, v)
					return
				}
				c.Add(k, k, int64(k%20))
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Entries > 64 || s.Cost > 1000 {
		t.Fatalf("bounds broken: %+v", s)
	}
}

func BenchmarkLRUGet(b *testing.B) {
	c := NewLRU[string, int](Limits{Entries: 1024}, nil)
	for i := range 1024 {
		c.Add(fmt.Sprint("sha256:", i), i, 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Get("sha256:512")
	}
}
