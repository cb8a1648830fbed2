// Package frame implements the message framing of CPython's
// multiprocessing.connection: every message is preceded by its length as a
// 4-byte big-endian signed integer; a message longer than 0x7fffffff bytes is
// announced by the 4-byte value -1 followed by its length as an 8-byte
// big-endian unsigned integer.
//
// The directory is pickle/ because frames carry pickles, but Go never reads
// or writes a pickle: Python pickles and unpickles, the core moves the bytes
// (which is why no Go pickle library, such as gopickle, is used). The format
// is specified in ARCHITECTURE.md, "Connection frame".
package frame

import (
	"encoding/binary"
	"errors"
)

// MaxShort is the largest length carried by the 4-byte header.
const MaxShort = 0x7fffffff

// MaxHeader is the longest header: the -1 marker and an 8-byte length.
const MaxHeader = 12

// ErrBadLength reports a header whose length no CPython peer can produce: a
// negative 4-byte length other than -1, or an 8-byte length that does not fit
// an int64.
var ErrBadLength = errors.New("bad message length")

// HeaderLen returns the number of header bytes that announce n payload bytes.
func HeaderLen(n int64) int {
	if n > MaxShort {
		return MaxHeader
	}
	return 4
}

// AppendHeader appends the header announcing n payload bytes to dst.
func AppendHeader(dst []byte, n int64) []byte {
	if n > MaxShort {
		dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// ParseHeader decodes a header from the bytes received so far. It returns
// need > 0 when the header is incomplete (need is how many bytes in total
// the header has once complete), or the payload size with need == 0.
func ParseHeader(b []byte) (size int64, need int, err error) {
	if len(b) < 4 {
		return 0, 4, nil
	}
	short := int32(binary.BigEndian.Uint32(b))
	switch {
	case short >= 0:
		return int64(short), 0, nil
	case short != -1:
		return 0, 0, ErrBadLength
	case len(b) < MaxHeader:
		return 0, MaxHeader, nil
	}
	long := binary.BigEndian.Uint64(b[4:])
	if long > 1<<63-1 {
		return 0, 0, ErrBadLength
	}
	return int64(long), 0, nil
}
