package frame

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
)

type golden struct {
	size   int64
	header []byte
}

// cpythonFrames reads the headers that CPython's multiprocessing.connection
// wrote (testdata/cpython_frames.txt, made by tests_py/tools/gen_cpython_frames.py).
func cpythonFrames(tb testing.TB) []golden {
	tb.Helper()
	f, err := os.Open("testdata/cpython_frames.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []golden
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		size, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		hdr, err := hex.DecodeString(fields[1])
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, golden{size, hdr})
	}
	if len(out) == 0 {
		tb.Fatal("no golden frames")
	}
	return out
}

func TestGoldenFramesRoundTrip(t *testing.T) {
	for _, g := range cpythonFrames(t) {
		if got := AppendHeader(nil, g.size); !bytes.Equal(got, g.header) {
			t.Errorf("AppendHeader(%d) = %x, CPython wrote %x", g.size, got, g.header)
		}
		if HeaderLen(g.size) != len(g.header) {
			t.Errorf("HeaderLen(%d) = %d, want %d", g.size, HeaderLen(g.size), len(g.header))
		}
		// Fed byte by byte, the parser asks for exactly the header's bytes.
		for i := 0; i < len(g.header); i++ {
			_, need, err := ParseHeader(g.header[:i])
			if err != nil || need <= i {
				t.Fatalf("ParseHeader(%x) = need %d, err %v: wants more bytes", g.header[:i], need, err)
			}
		}
		size, need, err := ParseHeader(g.header)
		if err != nil || need != 0 || size != g.size {
			t.Errorf("ParseHeader(%x) = %d, %d, %v; want %d", g.header, size, need, err, g.size)
		}
	}
}

func TestBadHeaders(t *testing.T) {
	for _, h := range []string{"fffffffe", "80000000", "ffffffff8000000000000000", "ffffffffffffffffffffffff"} {
		b, _ := hex.DecodeString(h)
		if _, _, err := ParseHeader(b); err != ErrBadLength {
			t.Errorf("ParseHeader(%s) err = %v, want ErrBadLength", h, err)
		}
	}
}

// FuzzParseHeader checks that no input makes the parser panic, ask for fewer
// bytes than it has, or accept a header it would not write back the same way.
func FuzzParseHeader(f *testing.F) {
	for _, g := range cpythonFrames(f) {
		f.Add(g.header)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		size, need, err := ParseHeader(b)
		switch {
		case err != nil:
			if size != 0 || need != 0 {
				t.Fatalf("error with size %d need %d", size, need)
			}
		case need > 0:
			if need <= len(b) || need > MaxHeader {
				t.Fatalf("need %d with %d bytes", need, len(b))
			}
		default:
			if size < 0 {
				t.Fatalf("negative size %d", size)
			}
			n := 4
			if len(b) >= 4 && bytes.Equal(b[:4], []byte{0xff, 0xff, 0xff, 0xff}) {
				n = MaxHeader
			}
			// CPython only uses the long form above MaxShort; both parse.
			if n == 4 || size > MaxShort {
				if got := AppendHeader(nil, size); !bytes.Equal(got, b[:n]) {
					t.Fatalf("re-encoded %d as %x, input %x", size, got, b[:n])
				}
			}
		}
	})
}
