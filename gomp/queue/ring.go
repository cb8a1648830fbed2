// Package queue is the data path of gomp's multiprocessing queues: a ring of
// pickled items in memory shared between processes (a memfd mapped
// MAP_SHARED), with futex wake-ups and no helper process or thread.
//
// # Layout
//
// The mapping starts with a 4 KiB header of 64-byte lines, each written by
// one side only where possible, then the data area (a power of two bytes):
//
//	line 0  magic, version, capacity, maxsize, flags          (constant)
//	line 1  tail, plock, putCount, plock's owner tag, journal  (producers)
//	line 2  head, clock, getCount, clock's owner tag, journal  (consumers)
//	line 3  dataWaiters: consumers sleeping on tail             (consumers)
//	line 4  spaceWaiters, spaceNeed: producers sleeping on head (producers)
//	line 6  done (task_done calls), joinSeq, joinWaiters       (JoinableQueue)
//	line 7  pids of the consumers asleep in waitData
//	line 8  pids of the producers asleep in waitSpace
//	line 9  readiness: state, watchers, nlock and its owner tag (see watch.go)
//	line 10 rlock (the bound's lock), entryHi, rlock's owner tag
//	12-19   per-process entries: items held outside the ring (see slots.go)
//
// head and tail are byte positions that only grow; tail-head bytes are in
// use. The data area holds records, each an 8-byte header (payload length,
// kind) and the payload padded to 8 bytes; a record may wrap around the end
// of the area. An item that fits is one WHOLE record. A larger item (the
// ring can be smaller than an item) is streamed as FIRST (its payload starts
// with the item's total length), MID..., LAST records while its producer
// holds the producer lock, so the fragments of one item are contiguous.
//
// # Locks and crashes
//
// Producers serialize on plock, consumers on clock: one producer and one
// consumer never contend. A lock word holds the owner's pid (and a waiters
// bit), and an owner tag next to it the owner's id (gomp/owner: pid and
// start-time tag). A process killed while it holds a lock is detected by the
// waiters (the pid is gone, a zombie, or was recycled by a process started
// later) and the lock is taken over: positions are only published once a
// record is complete, so the ring is consistent at every instant (the counts
// too: see slots.go). A producer that dies in the middle of a streamed item
// leaves its fragments behind; whoever takes the producer lock next appends
// an ABORT record, and a consumer that was assembling the item drops it. A
// consumer that dies in the middle of a streamed item leaves the rest of its
// fragments, which the next consumer skips. So a killed producer loses at
// most the item it was putting, and a killed consumer at most the item it
// was getting.
//
// # Wake-ups
//
// A consumer that finds the ring empty counts itself in dataWaiters and
// sleeps on the low word of tail; a producer that publishes a record wakes
// one sleeper if the count is non-zero (all of them for fragments, so that
// the consumer assembling the item is among them). Producers waiting for
// space (or for a slot of a bounded queue) sleep on the low word of head the
// same way, and say in spaceNeed how much room they want: consumers wake
// them once that much is free (a quarter of the ring for bytes, any progress
// for a slot), so that a consumer does not pay a futex call per item while a
// producer's overflow trails it. A sleeper also writes its pid in a slot, so
// that one killed in its sleep can be uncounted (see sleepers). Every wait is
// bounded by the caller's slice, so even a wake-up lost to a killed process
// costs at most one slice.
package queue

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	magicValue    = 0x716d6f67 // "gomq"
	layoutVer     = 5          // 5: counts that survive a killed process (slots.go)
	headerSize    = 4096
	recHdr        = 8
	minCapacity   = 4096
	maxCapacity   = 1 << 34
	offMagic      = 0
	offVersion    = 4
	offCapacity   = 8
	offMaxsize    = 16
	offFlags      = 24
	offTail       = 64
	offPlock      = 72
	offPutCount   = 80
	offPJValid    = 96 // the producer lock's journal (see slots.go)
	offPJTail     = 104
	offPJPut      = 112
	offHead       = 128
	offClock      = 136
	offGetCount   = 144
	offCJValid    = 160 // the consumer lock's journal
	offCJHead     = 168
	offCJGet      = 176
	offDataWait   = 192
	offSpaceWait  = 256
	offSpaceNeed  = 264
	offDone       = 384 // task_done calls (JoinableQueue)
	offJoinSeq    = 392
	offJoinWait   = 396
	offDataSlots  = 448 // [waitSlots]uint32: pids of sleeping consumers
	offSpaceSlots = 512 // [waitSlots]uint32: pids of sleeping producers
	offReady      = 576 // readiness state (see watch.go)
	offWatchers   = 580 // handles watching the eventfd
	offNlock      = 584 // lock of the resets; its owner tag at 600
	offRlock      = 640 // the bound's lock; its owner tag at 656
	offEntryHi    = 648 // entries ever claimed (a bound for scans)
	offEntries    = 768 // [numEntries]uint64: owner id << 32 | items held
)

// Record kinds.
const (
	kindWhole = 1
	kindFirst = 2
	kindMid   = 3
	kindLast  = 4
	kindAbort = 5
)

// Flags of a ring (constant after creation).
const (
	FlagBounded  = 1 // maxsize > 0: puts take a slot (see slots.go)
	FlagJoinable = 2 // puts count unfinished tasks
)

// ErrBadRing reports a mapping that is not a queue ring, or a ring whose
// contents are inconsistent (written by something other than this package).
var ErrBadRing = errors.New("queue: not a valid queue ring")

// Ring is one process's view of a shared ring.
type Ring struct {
	mem      []byte // the whole mapping
	efd      int    // the queue's readiness eventfd (see watch.go), owned; -1: none
	data     []byte // the data area
	capacity uint64
	mask     uint64
	maxsize  int64
	flags    uint32
	// Wake-ups in a row that found nobody asleep (see sleepers.wake).
	dataMisses  int32
	spaceMisses int32
	ent         atomic.Int32 // this process's entry + 1 (0: not claimed yet)
	lastReclaim atomic.Int64 // monoNow of the last look for dead processes
}

func (r *Ring) u32(off uintptr) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) u64(off uintptr) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) i64(off uintptr) *int64  { return (*int64)(unsafe.Pointer(&r.mem[off])) }

// The futex words on the low halves of tail and head (little-endian).
func (r *Ring) tailWord() *uint32 { return r.u32(offTail) }
func (r *Ring) headWord() *uint32 { return r.u32(offHead) }

// Capacity is the size of the data area in bytes.
func (r *Ring) Capacity() uint64 { return r.capacity }

// Maxsize is the bound on items of a bounded queue (0: unbounded).
func (r *Ring) Maxsize() int64 { return r.maxsize }

// Flags returns the ring's Flag* bits.
func (r *Ring) Flags() uint32 { return r.flags }

// Size is the length of the mapping.
func (r *Ring) Size() int { return len(r.mem) }

// Base is the address of the mapping (for diagnostics and tests).
func (r *Ring) Base() uintptr { return uintptr(unsafe.Pointer(&r.mem[0])) }

func roundCapacity(c uint64) (uint64, error) {
	if c < minCapacity {
		c = minCapacity
	}
	if c > maxCapacity {
		return 0, fmt.Errorf("queue: ring capacity %d is larger than %d", c, uint64(maxCapacity))
	}
	p := uint64(minCapacity)
	for p < c {
		p <<= 1
	}
	return p, nil
}

// Create makes a new ring of at least capacity data bytes in a new memfd and
// maps it, and the queue's readiness eventfd (see watch.go), which the ring
// owns (Eventfd). It returns the ring and the memfd (close-on-exec), which
// the caller owns: the memfd and the eventfd are what other processes
// attach with.
func Create(capacity uint64, maxsize int64, flags uint32) (*Ring, int, error) {
	c, err := roundCapacity(capacity)
	if err != nil {
		return nil, -1, err
	}
	if maxsize < 0 {
		maxsize = 0
	}
	if maxsize > 0 {
		flags |= FlagBounded
	} else {
		flags &^= FlagBounded
	}
	fd, err := unix.MemfdCreate("gomp-queue", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, -1, err
	}
	size := int64(headerSize) + int64(c)
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	// The eventfd starts readable, in the state "set": nobody watches yet
	// (the first watcher resets it, see Queue.Watch).
	efd, err := unix.Eventfd(1, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, -1, err
	}
	r := &Ring{mem: mem, efd: efd}
	*r.u32(offReady) = readySet
	*r.u64(offCapacity) = c
	*r.i64(offMaxsize) = maxsize
	*r.u32(offFlags) = flags
	*r.u64(offSpaceNeed) = math.MaxUint64
	r.initEntries()
	*r.u32(offVersion) = layoutVer
	atomic.StoreUint32(r.u32(offMagic), magicValue)
	if err := r.load(); err != nil {
		r.Unmap()
		unix.Close(fd)
		return nil, -1, err
	}
	return r, fd, nil
}

// Attach maps the ring in the memfd (or any file) fd. The caller keeps fd.
// efd is the queue's eventfd (from Create's ring in any process, inherited
// or passed), or -1; the ring owns it once Attach succeeds (Unmap closes
// it), the caller keeps it when Attach fails.
func Attach(fd, efd int) (*Ring, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Size < headerSize+minCapacity || st.Size > headerSize+maxCapacity {
		return nil, ErrBadRing
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	r := &Ring{mem: mem, efd: -1}
	if err := r.load(); err != nil {
		r.Unmap()
		return nil, err
	}
	r.efd = efd
	return r, nil
}

func (r *Ring) load() error {
	if atomic.LoadUint32(r.u32(offMagic)) != magicValue || *r.u32(offVersion) != layoutVer {
		return ErrBadRing
	}
	c := *r.u64(offCapacity)
	if c < minCapacity || c&(c-1) != 0 || uint64(len(r.mem)) != headerSize+c {
		return ErrBadRing
	}
	r.capacity = c
	r.mask = c - 1
	r.data = r.mem[headerSize:]
	r.maxsize = *r.i64(offMaxsize)
	r.flags = *r.u32(offFlags)
	return nil
}

// Eventfd is the queue's readiness eventfd in this process (-1: none).
func (r *Ring) Eventfd() int { return r.efd }

// Unmap releases the mapping and closes the eventfd; the ring must not be
// used afterwards.
func (r *Ring) Unmap() {
	if r.mem != nil {
		unix.Munmap(r.mem)
		r.mem, r.data = nil, nil
	}
	if r.efd >= 0 {
		unix.Close(r.efd)
		r.efd = -1
	}
}

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// recordSize is the room a record with n payload bytes takes.
func recordSize(n uint64) uint64 { return recHdr + align8(n) }

// writeAt copies p into the data area at position pos (wrapping).
func (r *Ring) writeAt(pos uint64, p []byte) {
	i := pos & r.mask
	n := copy(r.data[i:], p)
	if n < len(p) {
		copy(r.data, p[n:])
	}
}

// readAt copies len(p) bytes at position pos (wrapping) into p.
func (r *Ring) readAt(pos uint64, p []byte) {
	i := pos & r.mask
	n := copy(p, r.data[i:])
	if n < len(p) {
		copy(p[n:], r.data)
	}
}

// putHeader writes a record header at pos (headers never wrap: records are
// 8-byte aligned and the capacity is a multiple of 8).
func (r *Ring) putHeader(pos uint64, n uint32, kind uint32) {
	i := pos & r.mask
	*(*uint32)(unsafe.Pointer(&r.data[i])) = n
	*(*uint32)(unsafe.Pointer(&r.data[i+4])) = kind
}

func (r *Ring) header(pos uint64) (n uint32, kind uint32) {
	i := pos & r.mask
	return *(*uint32)(unsafe.Pointer(&r.data[i])), *(*uint32)(unsafe.Pointer(&r.data[i+4]))
}

func (r *Ring) putU64(pos uint64, v uint64) {
	var b [8]byte
	*(*uint64)(unsafe.Pointer(&b[0])) = v
	r.writeAt(pos, b[:])
}

func (r *Ring) getU64(pos uint64) uint64 {
	var b [8]byte
	r.readAt(pos, b[:])
	return *(*uint64)(unsafe.Pointer(&b[0]))
}
