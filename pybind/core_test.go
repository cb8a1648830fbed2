package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Two (here eight) threads failing at once each get their own error text.
func TestErrorTextPerCall(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				want := fmt.Sprintf("goroutine %d error %d", g, i)
				r := int64(code(errors.New(want)))
				if r > errTextBase() {
					t.Errorf("code() = %d, not a text result", r)
					return
				}
				got, ok := takeError(r)
				if !ok || got != want {
					t.Errorf("takeError = %q, %v; want %q", got, ok, want)
					return
				}
				if _, ok := takeError(r); ok {
					t.Error("a text was collected twice")
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestPanicText(t *testing.T) {
	r := int64(gompcore_selftest(1))
	if r > errTextBase() || (errTextBase()-r)&1 != 1 {
		t.Fatalf("selftest(1) = %d, not a panic result", r)
	}
	text, ok := takeError(r)
	if !ok || !strings.Contains(text, "nil map") {
		t.Fatalf("panic text %q, %v", text, ok)
	}
}

func TestUncollectedTextsAreDropped(t *testing.T) {
	first := int64(code(errors.New("first")))
	var later []int64
	for i := 0; i < errTextSlots; i++ {
		later = append(later, int64(code(errors.New("later"))))
	}
	if _, ok := takeError(first); ok {
		t.Fatal("a text older than errTextSlots uncollected ones is still kept")
	}
	for _, r := range later {
		if text, ok := takeError(r); !ok || text != "later" {
			t.Fatalf("takeError = %q, %v", text, ok)
		}
	}
}
